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

Modules: :mod:`ai.install.pointer` (the enabled-model link and names), :mod:`ai.install.files`
(lock, staging, durable writes), :mod:`ai.install.inventory` (list and verify); this module
installs and enables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ai.install.audit import ModelAudit
from ai.install.errors import (
    InstallError,
    ManifestError,
    SourceError,
    TargetError,
    VerificationError,
)
from ai.install.files import (
    LOCK,
    STAGING,
    drop_staging,
    locked,
    matches,
    read_record,
    safe_dirs,
)
from ai.install.inventory import (
    InstalledModel,
    VerifyReport,
    gemma_check,
    list_models,
    verify_dir,
    verify_model,
)
from ai.install.manifest import (
    MANIFEST_NAME,
    RECORD_NAME,
    Manifest,
    parse_manifest,
)
from ai.install.pointer import (
    check_name,
    check_pointer,
    default_name,
    enabled_name,
    enabled_path,
    models_dir,
    pointer,
    switch_pointer,
)
from ai.install.sources import Source
from ai.settings import AiSettings
from radiant_common.durable import fsync_dir, write_atomic

#: Room kept free on the data partition beyond the checkpoint's own size.
SPARE_BYTES = 256 * 1024 * 1024
_SHA_HEX = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[str], None]

__all__ = [
    "LOCK",
    "SPARE_BYTES",
    "STAGING",
    "InstallResult",
    "InstalledModel",
    "Progress",
    "VerifyReport",
    "check_name",
    "default_name",
    "enable_model",
    "enabled_name",
    "enabled_path",
    "install",
    "list_models",
    "models_dir",
    "pointer",
    "verify_model",
]


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
    settings: AiSettings,
    audit: ModelAudit,
    source: Source,
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
        with locked(models):
            check_pointer(settings)
            final = models / chosen
            if final.exists() or final.is_symlink():
                held = read_record(final) if final.is_dir() and not final.is_symlink() else None
                if held is None or held.get("manifest_sha256") != manifest.digest:
                    raise TargetError(
                        f"{final} already holds another checkpoint; pass another --name"
                    )
                say(f"{chosen} is already installed; checking its files")
                report = verify_dir(final, chosen)
                if not report.ok:
                    raise VerificationError(
                        f"{final} is installed but damaged ({report.problems[0]}); remove it "
                        "and install again"
                    )
                gemma_check(final)
                previous = switch_pointer(settings, chosen) if enable else None
                result = InstallResult(
                    chosen, final, manifest, enable, previous, True, 0, manifest.total_bytes
                )
            else:
                staging = models / STAGING / manifest.digest[:16]
                result = _install_new(settings, source, manifest, chosen, staging, enable, say)
        audit(
            "model.install",
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
            drop_staging(staging)
        audit(
            "model.install",
            object_id=chosen,
            outcome="failure",
            detail=_audit_detail(manifest, source=source.kind, error=exc.kind, resumable=keep),
        )
        if exc is caught:
            raise
        raise exc from None


def _install_new(
    settings: AiSettings,
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
        destination = safe_dirs(tree, entry.path)
        if matches(destination, entry):
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
            gemma_check(tree)
    gemma_check(tree)
    write_atomic(tree / MANIFEST_NAME, manifest.raw)
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
    write_atomic(tree / RECORD_NAME, (json.dumps(record_data, indent=2) + "\n").encode())
    for current, _dirs, _files in os.walk(tree, topdown=False):
        fsync_dir(Path(current))
    final = models / name
    os.rename(tree, final)
    fsync_dir(models)
    drop_staging(staging)
    previous: str | None = None
    if enable:
        try:
            previous = switch_pointer(settings, name)
        except OSError as exc:
            raise TargetError(
                f"installed as {final} but not enabled ({exc.strerror}); the previous model "
                f"stays enabled: run `radiant model enable {name}`"
            ) from None
    return InstallResult(name, final, manifest, enable, previous, False, fetched, reused)


def enable_model(settings: AiSettings, audit: ModelAudit, name: str) -> str | None:
    """Enable an installed model (re-verified first); returns the previous one's name."""
    check_name(settings, name)
    path = models_dir(settings) / name
    if not path.is_dir() or path.is_symlink():
        raise TargetError(f"no model {name!r} in {models_dir(settings)} (see `radiant model list`)")
    with locked(models_dir(settings)):
        check_pointer(settings)
        report = verify_dir(path, name)
        if not report.ok:
            audit(
                "model.enable",
                object_id=name,
                outcome="failure",
                detail={"error": "verification"},
            )
            raise VerificationError(f"{name} is damaged: {report.problems[0]}; not enabled")
        gemma_check(path)
        previous = switch_pointer(settings, name)
    audit(
        "model.enable",
        object_id=name,
        detail={"previous": previous} if previous else None,
    )
    return previous
