"""Verified installation of a MedGemma checkpoint into ``<data_dir>/models/<name>`` and enabling
it for the transformers engine.

The engine loads ``settings.ai_model_path`` (``RADIANT_AI_MODEL_DIR``, by default
``<data_dir>/models/medgemma-1.5-4b-it``). That path is the *pointer*: enabling a model makes it
a symbolic link to ``<name>``, swapped atomically (a new link renamed over the old one), so the
engine sees the old checkpoint or the new one, never a mixture. A checkpoint copied there by hand
(a real folder) is moved aside to ``<name>-manual-<time>`` the first time another model is
enabled.

An installation:

1. reads the manifest (optionally pinned by its SHA-256) and checks every path;
2. refuses early what cannot work: a taken name, no room on the disk, a pointer it may not
   replace, another installation running (a lock file);
3. fetches each file into ``models/.staging/<manifest digest>/``: ``parts/<sha256>.part`` while
   it streams (hashed on the way; kept on a network failure so the same command resumes), then
   renamed into ``tree/<path>`` once its size and SHA-256 match the manifest. ``config.json``
   comes first and must describe a Gemma 3 checkpoint (the engine's own check) before any weight
   is fetched;
4. writes the manifest and an install record beside the files, fsyncs, renames ``tree`` to
   ``models/<name>``, then swaps the pointer and audits (``model.install``).

Any failure before the last step leaves the models folder as it was (the previous model stays
enabled); the staging folder is removed, except after a network failure, when it is kept for
resuming. Every failure is audited too, with its class (manifest, source, verification,
checkpoint, target).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ai.engines.base import EngineUnavailable
from ai.engines.transformers_engine import inspect_checkpoint
from ai.install.errors import (
    CheckpointError,
    InstallError,
    ManifestError,
    SourceError,
    TargetError,
    VerificationError,
)
from ai.install.manifest import (
    MANIFEST_NAME,
    RECORD_NAME,
    FileEntry,
    Manifest,
    checkpoint_files,
    hash_file,
    parse_manifest,
)
from ai.install.sources import Source
from appliance.audit.models import Actor
from appliance.audit.service import record
from appliance.config import Settings

STAGING = ".staging"
LOCK = ".install.lock"
#: Room kept free on the data partition beyond the checkpoint's own size.
SPARE_BYTES = 256 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_SHA_HEX = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """A checkpoint folder under ``models/`` and what its install record says."""

    name: str
    path: Path
    enabled: bool
    managed: bool
    model_id: str | None = None
    revision: str | None = None
    manifest_sha256: str | None = None
    files: int | None = None
    bytes: int | None = None
    installed_at: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class InstallResult:
    name: str
    path: Path
    manifest: Manifest
    enabled: bool
    previous: str | None
    already_installed: bool
    fetched_bytes: int
    reused_bytes: int


@dataclass(slots=True)
class VerifyReport:
    name: str
    path: Path
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def models_dir(settings: Settings) -> Path:
    return settings.data_dir / "models"


def pointer(settings: Settings) -> Path:
    """The path the transformers engine loads (absolute, its last component not resolved)."""
    path = settings.ai_model_path
    return path.parent.resolve() / path.name


def _inside_models(settings: Settings, path: Path) -> bool:
    return path.parent == models_dir(settings).resolve()


def enabled_path(settings: Settings) -> Path | None:
    """Where the pointer leads (a real folder for a checkpoint copied by hand), or None."""
    link = pointer(settings)
    if link.is_symlink():
        target = Path(os.readlink(link))
        target = (link.parent / target) if not target.is_absolute() else target
        return target.parent.resolve() / target.name if target.is_dir() else None
    return link if link.is_dir() else None


def enabled_name(settings: Settings) -> str | None:
    """The name of the enabled model under ``models/``, or None."""
    target = enabled_path(settings)
    if target is None or not _inside_models(settings, target):
        return None
    return target.name


def check_name(settings: Settings, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise TargetError(
            f"{name!r} is not a model name (1-100 letters, digits, '.', '_', '+', '-'; not "
            "starting with a dot)"
        )
    link = pointer(settings)
    if _inside_models(settings, link) and name == link.name:
        raise TargetError(
            f"{name!r} is the name the engine loads (the enabled-model link); choose another --name"
        )
    return name


def default_name(manifest: Manifest) -> str:
    """``<last part of the model id>-<first 12 of the revision or of the manifest digest>``."""
    base = re.sub(r"[^A-Za-z0-9._+-]", "-", manifest.model_id.rsplit("/", 1)[-1]).strip(".-")
    revision = manifest.revision.lower()
    tag = revision[:12] if re.fullmatch(r"[0-9a-f]{12,64}", revision) else manifest.digest[:12]
    return f"{base or 'model'}-{tag}"[:100]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _locked(models: Path) -> Iterator[None]:
    models.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(models / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TargetError("another model installation is running; try again later") from None
        yield
    finally:
        os.close(fd)


def _check_pointer(settings: Settings) -> None:
    """Refuse, before fetching anything, a pointer this installer may not replace."""
    link = pointer(settings)
    if link.is_symlink() or not link.exists():
        if not link.parent.is_dir():
            raise TargetError(
                f"RADIANT_AI_MODEL_DIR={link}: its folder {link.parent} does not exist"
            )
        return
    if link.is_dir() and _inside_models(settings, link):
        return  # a checkpoint copied by hand: moved aside when another model is enabled
    raise TargetError(
        f"RADIANT_AI_MODEL_DIR={link} is a {'folder' if link.is_dir() else 'file'} outside "
        f"{models_dir(settings)}; `radiant model` enables a model by making that path a link: "
        "move it away or unset RADIANT_AI_MODEL_DIR"
    )


def _switch_pointer(settings: Settings, name: str) -> str | None:
    """Point the engine's path at ``models/<name>`` atomically; returns the previous name."""
    link = pointer(settings)
    target = models_dir(settings).resolve() / name
    previous = enabled_name(settings)
    value = name if _inside_models(settings, link) else str(target)
    temp = link.parent / f".{link.name}.{secrets.token_hex(4)}.link"
    os.symlink(value, temp)
    try:
        if link.is_dir() and not link.is_symlink():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            aside = link.parent / f"{link.name}-manual-{stamp}"
            os.rename(link, aside)
            previous = aside.name
        os.replace(temp, link)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(link.parent)
    return previous


def _drop_staging(staging: Path) -> None:
    """Remove one staging folder, and ``.staging`` itself once empty."""
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.parent.rmdir()


def _gemma_check(path: Path) -> None:
    try:
        inspect_checkpoint(path)
    except EngineUnavailable as exc:
        raise CheckpointError(f"not enabled: {exc}") from None


def _safe_dirs(root: Path, rel: str) -> Path:
    """``root/<folders of rel>`` created one by one, refusing anything that is not a folder."""
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            current.mkdir(mode=0o700)
            continue
        if not stat.S_ISDIR(mode):
            raise TargetError(f"{current} is not a folder (a symbolic link or a file); refused")
    return current / rel.split("/")[-1]


def _matches(path: Path, entry: FileEntry) -> bool:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode) or path.stat().st_size != entry.size:
        return False
    return hash_file(path) == (entry.size, entry.sha256)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _audit_detail(manifest: Manifest | None, **extra: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    if manifest is not None:
        detail |= {
            "model_id": manifest.model_id,
            "revision": manifest.revision,
            "manifest_sha256": manifest.digest,
            "files": len(manifest.files),
            "bytes": manifest.total_bytes,
        }
    return detail | {k: v for k, v in extra.items() if v is not None}


def install(
    settings: Settings,
    db: sqlite_utils.Database,
    source: Source,
    actor: Actor,
    *,
    name: str | None = None,
    manifest_sha256: str | None = None,
    enable: bool = True,
    progress: Progress | None = None,
) -> InstallResult:
    """Install (and by default enable) the checkpoint ``source`` offers; see the module
    docstring. Raises an :class:`InstallError` subclass, after auditing it."""
    say = progress or (lambda _message: None)
    manifest: Manifest | None = None
    staging: Path | None = None
    chosen = name
    try:
        raw = source.read_manifest()
        if manifest_sha256 is not None:
            expected = manifest_sha256.strip().lower()
            if not _SHA_HEX.fullmatch(expected):
                raise ManifestError("--manifest-sha256 must be 64 hexadecimal digits")
            actual = hashlib.sha256(raw).hexdigest()
            if actual != expected:
                raise ManifestError(
                    f"the manifest's SHA-256 is {actual}, not the pinned {expected}: refused"
                )
        manifest = parse_manifest(raw)
        chosen = check_name(settings, name or default_name(manifest))
        models = models_dir(settings)
        with _locked(models):
            _check_pointer(settings)
            final = models / chosen
            if final.exists() or final.is_symlink():
                held = _read_record(final) if final.is_dir() and not final.is_symlink() else None
                if held is None or held.get("manifest_sha256") != manifest.digest:
                    raise TargetError(
                        f"{final} already holds another checkpoint; pass another --name"
                    )
                say(f"{chosen} is already installed; checking its files")
                report = _verify_dir(final, chosen)
                if not report.ok:
                    raise VerificationError(
                        f"{final} is installed but damaged ({report.problems[0]}); remove it "
                        "and install again"
                    )
                _gemma_check(final)
                previous = _switch_pointer(settings, chosen) if enable else None
                result = InstallResult(
                    chosen, final, manifest, enable, previous, True, 0, manifest.total_bytes
                )
            else:
                staging = models / STAGING / manifest.digest[:16]
                result = _install_new(settings, source, manifest, chosen, staging, enable, say)
        record(
            db,
            actor,
            "model.install",
            object_type="model",
            object_id=chosen,
            detail=_audit_detail(
                manifest,
                source=source.kind,
                enabled=result.enabled,
                previous=result.previous,
                already_installed=result.already_installed or None,
            ),
        )
        return result
    except (InstallError, OSError) as caught:
        exc = (
            caught
            if isinstance(caught, InstallError)
            else TargetError(f"{caught.filename or 'the models folder'}: {caught.strerror}")
        )
        keep = isinstance(exc, SourceError) and exc.resumable
        if staging is not None and not keep:
            _drop_staging(staging)
        record(
            db,
            actor,
            "model.install",
            object_type="model",
            object_id=chosen,
            outcome="failure",
            detail=_audit_detail(manifest, source=source.kind, error=exc.kind, resumable=keep),
        )
        if exc is caught:
            raise
        raise exc from None


def _install_new(
    settings: Settings,
    source: Source,
    manifest: Manifest,
    name: str,
    staging: Path,
    enable: bool,
    say: Progress,
) -> InstallResult:
    models = models_dir(settings)
    parts = staging / "parts"
    tree = staging / "tree"
    for folder in (models / STAGING, staging, parts, tree):
        folder.mkdir(exist_ok=True, mode=0o700)
        if folder.is_symlink() or not folder.is_dir():
            raise TargetError(f"{folder} is not a folder; refused")
    present = 0
    for entry in manifest.files:
        for candidate in (tree / entry.path, parts / f"{entry.sha256}.part"):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(candidate.lstat().st_mode):
                    present += min(candidate.lstat().st_size, entry.size)
                    break
    needed = manifest.total_bytes - present
    free = shutil.disk_usage(models).free
    if needed + SPARE_BYTES > free:
        raise TargetError(
            f"not enough room in {models}: {needed / 1e9:.2f} GB to fetch, "
            f"{free / 1e9:.2f} GB free (keep {SPARE_BYTES // 2**20} MiB spare)"
        )
    fetched = reused = 0
    ordered = manifest.ordered()
    for index, entry in enumerate(ordered, start=1):
        destination = _safe_dirs(tree, entry.path)
        if _matches(destination, entry):
            reused += entry.size
        else:
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(destination.lstat().st_mode):
                    raise TargetError(f"{destination} is not a regular file; refused")
                destination.unlink()
            part = parts / f"{entry.sha256}.part"
            say(f"[{index}/{len(ordered)}] {entry.path} ({entry.size / 1e6:.1f} MB)")
            size, digest = source.fetch(entry, part)
            if size != entry.size or digest != entry.sha256:
                with contextlib.suppress(OSError):
                    part.unlink()
                what = (
                    f"{size} bytes, the manifest lists {entry.size}"
                    if size != entry.size
                    else f"SHA-256 {digest}, the manifest lists {entry.sha256}"
                )
                raise VerificationError(f"{entry.path}: {what}; nothing was enabled")
            os.rename(part, destination)
            fetched += entry.size
        if entry.path == "config.json":
            _gemma_check(tree)
    _gemma_check(tree)
    _write_file(tree / MANIFEST_NAME, manifest.raw)
    record_data = {
        "name": name,
        "model_id": manifest.model_id,
        "revision": manifest.revision,
        "license": manifest.license,
        "manifest_sha256": manifest.digest,
        "files": len(manifest.files),
        "bytes": manifest.total_bytes,
        "source": source.kind,
        "from": source.describe(),
        "installed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _write_file(tree / RECORD_NAME, (json.dumps(record_data, indent=2) + "\n").encode())
    for current, _dirs, _files in os.walk(tree, topdown=False):
        _fsync_dir(Path(current))
    final = models / name
    os.rename(tree, final)
    _fsync_dir(models)
    _drop_staging(staging)
    previous: str | None = None
    if enable:
        try:
            previous = _switch_pointer(settings, name)
        except OSError as exc:
            raise TargetError(
                f"installed as {final} but not enabled ({exc.strerror}); the previous model "
                f"stays enabled: run `radiant model enable {name}`"
            ) from None
    return InstallResult(name, final, manifest, enable, previous, False, fetched, reused)


def enable_model(
    settings: Settings, db: sqlite_utils.Database, name: str, actor: Actor
) -> str | None:
    """Enable an installed model (re-verified first); returns the previous one's name."""
    check_name(settings, name)
    path = models_dir(settings) / name
    if not path.is_dir() or path.is_symlink():
        raise TargetError(f"no model {name!r} in {models_dir(settings)} (see `radiant model list`)")
    with _locked(models_dir(settings)):
        _check_pointer(settings)
        report = _verify_dir(path, name)
        if not report.ok:
            record(
                db,
                actor,
                "model.enable",
                object_type="model",
                object_id=name,
                outcome="failure",
                detail={"error": "verification"},
            )
            raise VerificationError(f"{name} is damaged: {report.problems[0]}; not enabled")
        _gemma_check(path)
        previous = _switch_pointer(settings, name)
    record(
        db,
        actor,
        "model.enable",
        object_type="model",
        object_id=name,
        detail={"previous": previous} if previous else None,
    )
    return previous


def list_models(settings: Settings) -> list[InstalledModel]:
    """The checkpoint folders under ``models/`` (hidden entries and links left out)."""
    models = models_dir(settings)
    if not models.is_dir():
        return []
    current = enabled_path(settings)
    found: list[InstalledModel] = []
    for item in sorted(models.iterdir()):
        if item.name.startswith(".") or item.is_symlink() or not item.is_dir():
            continue
        data = _read_record(item)
        enabled = current is not None and current == item.resolve()
        if data is None:
            found.append(InstalledModel(item.name, item, enabled, managed=False))
            continue
        found.append(
            InstalledModel(
                name=item.name,
                path=item,
                enabled=enabled,
                managed=True,
                model_id=str(data.get("model_id", "")) or None,
                revision=str(data.get("revision", "")) or None,
                manifest_sha256=str(data.get("manifest_sha256", "")) or None,
                files=int(data["files"]) if isinstance(data.get("files"), int) else None,
                bytes=int(data["bytes"]) if isinstance(data.get("bytes"), int) else None,
                installed_at=str(data.get("installed_at", "")) or None,
                source=str(data.get("source", "")) or None,
            )
        )
    return found


def _verify_dir(path: Path, name: str) -> VerifyReport:
    report = VerifyReport(name=name, path=path)
    try:
        manifest = parse_manifest((path / MANIFEST_NAME).read_bytes())
    except FileNotFoundError:
        report.problems.append(
            f"no {MANIFEST_NAME} in {path} (copied by hand?): make one from a trusted copy "
            "with `radiant model manifest` and install from it"
        )
        return report
    except ManifestError as exc:
        report.problems.append(f"{MANIFEST_NAME}: {exc}")
        return report
    for entry in manifest.files:
        item = path / entry.path
        try:
            mode = item.lstat().st_mode
        except FileNotFoundError:
            report.problems.append(f"{entry.path}: missing")
            continue
        if not stat.S_ISREG(mode):
            report.problems.append(f"{entry.path}: not a regular file")
            continue
        size, digest = hash_file(item)
        report.files += 1
        report.bytes += size
        if size != entry.size:
            report.problems.append(f"{entry.path}: {size} bytes, the manifest lists {entry.size}")
        elif digest != entry.sha256:
            report.problems.append(f"{entry.path}: SHA-256 differs from the manifest")
    listed = {entry.path for entry in manifest.files}
    try:
        extra = [rel for rel in checkpoint_files(path) if rel not in listed]
    except ManifestError as exc:
        report.problems.append(str(exc))
        extra = []
    report.problems.extend(f"{rel}: not in the manifest" for rel in extra)
    return report


def verify_model(
    settings: Settings, db: sqlite_utils.Database, actor: Actor, name: str | None = None
) -> VerifyReport:
    """Re-hash a model's files against its manifest (default: the enabled one); audited."""
    if name is None:
        path = enabled_path(settings)
        if path is None:
            raise TargetError(
                f"no model is enabled ({pointer(settings)} does not lead to a checkpoint); "
                "name one, see `radiant model list`"
            )
        label = path.name
    else:
        path = models_dir(settings) / name
        label = name
        if not path.is_dir() or path.is_symlink():
            raise TargetError(f"no model {name!r} in {models_dir(settings)}")
    report = _verify_dir(path, label)
    if report.ok:
        try:
            _gemma_check(path)
        except CheckpointError as exc:
            report.problems.append(str(exc))
    record(
        db,
        actor,
        "model.verify",
        object_type="model",
        object_id=label,
        outcome="success" if report.ok else "failure",
        detail={"files": report.files, "bytes": report.bytes, "problems": len(report.problems)},
    )
    return report
