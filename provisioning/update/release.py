"""Software releases: a folder of wheels and a ``release.json`` signed by the fleet key.

Bundle (a folder)::

    release.json   {"format": "radiant-release/1", "app": "radiantai", "version": "0.2.0",
                    "channel": "stable", "schema_version": 12, "issued_at": "...",
                    "files": [{"path": "wheels/x.whl", "bytes": N, "sha256": "..."}, ...],
                    "signature": "..."}
    wheels/*.whl   the app's own wheel and every Python dependency (installed offline)

``no_deps`` (optional) names requirements the box installs from the bundle's wheels with
``pip --no-deps`` after the app (:data:`NO_DEPS`: medspaCy, whose published metadata pins an
older spaCy than the app runs); each must have its wheel in the bundle.

``schema_version`` is the highest database migration the release's wheel ships (read from the
wheel itself). The signature is :mod:`provisioning.signing`'s (Ed25519 over canonical JSON).
A box accepts a bundle only when the signature is the pinned fleet key's, every listed file has
its size and SHA-256, no file is missing, extra, a link or outside the folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.config import check_software_channel
from appliance.db.rows import now_iso
from provisioning import signing

RELEASE_FORMAT = "radiant-release/1"
RELEASE_DOC = "release.json"
APP = "radiantai"
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_MIGRATION = re.compile(r"^appliance/db/migrations/(\d{4})_[a-z0-9_]+\.sql$")
_WHEEL = re.compile(r"^[A-Za-z0-9_.+-]+\.whl$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\d[A-Za-z0-9.]*)$")

#: Installed next to the app with ``pip --no-deps``, in ./just, in the disk image
#: (image/builder/build-image.sh) and in every release's app slot: medspaCy (ConText, used by
#: ai/hedging.py) pins spacy<3.8 on Python < 3.12, and spaCy < 3.8 needs numpy < 2, which the
#: DICOM codecs refuse; medspaCy's own run-time needs are among the app's dependencies.
NO_DEPS = ("medspacy==1.3.1", "PyRuSH==1.0.13", "medspacy_quickumls==3.2")


class ReleaseError(Exception):
    """A bundle is malformed, tampered with or not signed by the fleet key (one line)."""


def parse_version(text: str) -> tuple[int, ...]:
    """``1.2.3`` -> (1, 2, 3): release numbers only (no pre-releases); ValueError otherwise."""
    if not isinstance(text, str) or not _VERSION.match(text):
        raise ValueError(f"version {text!r} is not N[.N[.N[.N]]]")
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (4 - len(parts))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_schema_version(wheel: Path) -> int:
    """The highest migration number inside the app's wheel (0 when it ships none)."""
    with zipfile.ZipFile(wheel) as archive:
        numbers = [int(m[1]) for n in archive.namelist() if (m := _MIGRATION.match(n))]
    return max(numbers, default=0)


def app_wheel(wheels: Path, version: str) -> Path:
    name = f"{APP}-{version}-"
    found = [p for p in wheels.glob("*.whl") if p.name.startswith(name)]
    if len(found) != 1:
        raise ReleaseError(f"{wheels}: expected one {name}*.whl, found {len(found)}")
    return found[0]


def _normalize(name: str) -> str:
    """A distribution name as wheel file names spell it (PEP 427, PEP 503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def no_deps_wheel(names: Sequence[str], requirement: str) -> str:
    """The wheel file name among ``names`` that provides ``requirement`` (``name==version``);
    ReleaseError when it is malformed or has no wheel."""
    pin = _PIN.match(requirement)
    if pin is None:
        raise ReleaseError(f"no_deps: {requirement!r} is not name==version")
    wanted = (_normalize(pin[1]), pin[2])
    found = [
        name
        for name in names
        if len(parts := name.split("-")) >= 3 and (_normalize(parts[0]), parts[1]) == wanted
    ]
    if len(found) != 1:
        raise ReleaseError(
            f"no_deps: no wheel for {requirement} (make it with "
            f"`pip wheel --no-deps --wheel-dir WHEELS {requirement}`)"
        )
    return found[0]


def build(
    bundle: Path,
    wheels: Path,
    version: str,
    channel: str,
    key: Ed25519PrivateKey,
    no_deps: Sequence[str] = NO_DEPS,
) -> dict[str, Any]:
    """Make a signed bundle in ``bundle`` (created, must not exist) from the wheels in
    ``wheels`` (the app's, its dependencies' and those of ``no_deps``); returns the signed
    release document."""
    try:
        parse_version(version)
        check_software_channel(channel)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    app = app_wheel(wheels, version)
    names = [p.name for p in wheels.glob("*.whl")]
    for requirement in no_deps:
        no_deps_wheel(names, requirement)
    if bundle.exists():
        raise ReleaseError(f"{bundle} exists")
    (bundle / "wheels").mkdir(parents=True)
    files = []
    for source in sorted(wheels.glob("*.whl")):
        target = bundle / "wheels" / source.name
        target.write_bytes(source.read_bytes())
        files.append(
            {
                "path": f"wheels/{source.name}",
                "bytes": target.stat().st_size,
                "sha256": sha256_file(target),
            }
        )
    document = signing.sign(
        {
            "format": RELEASE_FORMAT,
            "app": APP,
            "version": version,
            "channel": channel,
            "schema_version": wheel_schema_version(app),
            "issued_at": now_iso(),
            "files": files,
            "no_deps": list(no_deps),
        },
        key,
    )
    signing.write_atomic(bundle / RELEASE_DOC, _dumps(document), mode=0o644)
    return document


def _dumps(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Release:
    """A verified release document."""

    version: str
    channel: str
    schema_version: int
    files: tuple[tuple[str, int, str], ...]
    sha256: str
    document: dict[str, Any]
    no_deps: tuple[str, ...] = ()


def read_document(bundle: Path) -> dict[str, Any]:
    try:
        value = json.loads((bundle / RELEASE_DOC).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReleaseError(f"{RELEASE_DOC}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError):
        raise ReleaseError(f"{RELEASE_DOC} is not JSON") from None
    if not isinstance(value, dict):
        raise ReleaseError(f"{RELEASE_DOC} is not a JSON object")
    return value


def check_document(document: dict[str, Any], key: Ed25519PublicKey) -> Release:
    """Signature and shape of a release document (not its files)."""
    try:
        signing.verify(document, key)
    except signing.SignatureError as exc:
        raise ReleaseError(f"{RELEASE_DOC}: {exc}") from None
    if document.get("format") != RELEASE_FORMAT or document.get("app") != APP:
        raise ReleaseError(f"{RELEASE_DOC}: not a {APP} release ({RELEASE_FORMAT})")
    version, channel = document.get("version"), document.get("channel")
    schema = document.get("schema_version")
    try:
        parse_version(str(version))
        check_software_channel(str(channel))
    except ValueError as exc:
        raise ReleaseError(f"{RELEASE_DOC}: {exc}") from None
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 0:
        raise ReleaseError(f"{RELEASE_DOC}: schema_version must be a whole number")
    files = []
    for entry in document.get("files") or []:
        path, size, sha = (entry.get(k) for k in ("path", "bytes", "sha256"))
        pure = PurePosixPath(str(path))
        if (
            len(pure.parts) != 2
            or pure.parts[0] != "wheels"
            or not _WHEEL.match(pure.name)
            or not isinstance(size, int)
            or not isinstance(sha, str)
            or not re.fullmatch(r"[0-9a-f]{64}", sha)
        ):
            raise ReleaseError(f"{RELEASE_DOC}: bad file entry {entry!r}")
        files.append((str(pure), size, sha))
    if not any(p.startswith(f"wheels/{APP}-{version}-") for p, _, _ in files):
        raise ReleaseError(f"{RELEASE_DOC}: the {APP} {version} wheel is not listed")
    no_deps = document.get("no_deps", [])
    if not isinstance(no_deps, list) or not all(isinstance(r, str) for r in no_deps):
        raise ReleaseError(f"{RELEASE_DOC}: no_deps must be a list of name==version")
    names = [PurePosixPath(p).name for p, _, _ in files]
    for requirement in no_deps:
        try:
            no_deps_wheel(names, requirement)
        except ReleaseError as exc:
            raise ReleaseError(f"{RELEASE_DOC}: {exc}") from None
    return Release(
        str(version),
        str(channel),
        schema,
        tuple(files),
        signing.document_sha256(document),
        document,
        tuple(no_deps),
    )


def verify(bundle: Path, key: Ed25519PublicKey) -> Release:
    """The bundle's release, after checking its signature and every file; ReleaseError else."""
    release = check_document(read_document(bundle), key)
    listed = {path for path, _, _ in release.files}
    present = {
        p.relative_to(bundle).as_posix()
        for p in bundle.rglob("*")
        if p.is_symlink() or not p.is_dir()
    } - {RELEASE_DOC}
    if extra := sorted(present - listed):
        raise ReleaseError(f"files not in {RELEASE_DOC}: {', '.join(extra[:3])}")
    for path, size, sha in release.files:
        target = bundle / path
        if target.is_symlink() or not target.is_file():
            raise ReleaseError(f"{path}: missing or not a plain file")
        if target.stat().st_size != size or sha256_file(target) != sha:
            raise ReleaseError(f"{path}: size or SHA-256 differs from {RELEASE_DOC} (tampered)")
    return release
