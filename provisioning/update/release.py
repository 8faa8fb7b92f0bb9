"""Software releases: a folder of wheels and a ``release.json`` signed by the fleet key.

Bundle (a folder)::

    release.json   {"format": "radiant-release/1", "app": "radiantai", "version": "0.2.0",
                    "channel": "stable", "schema_version": 12, "issued_at": "...",
                    "files": [{"path": "wheels/x.whl", "bytes": N, "sha256": "..."}, ...],
                    "signature": "..."}
    wheels/*.whl   the app's own wheel and every Python dependency (installed offline)

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


def build(
    bundle: Path, wheels: Path, version: str, channel: str, key: Ed25519PrivateKey
) -> dict[str, Any]:
    """Make a signed bundle in ``bundle`` (created, must not exist) from the wheels in
    ``wheels``; returns the signed release document."""
    try:
        parse_version(version)
        check_software_channel(channel)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    app = app_wheel(wheels, version)
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
    return Release(
        str(version),
        str(channel),
        schema,
        tuple(files),
        signing.document_sha256(document),
        document,
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
