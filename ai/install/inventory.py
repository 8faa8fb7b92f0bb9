"""The installed models: listing them with their install records, and re-hashing one against its
manifest (``radiant model list`` / ``verify``), audited."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from ai.engines.base import EngineUnavailable
from ai.engines.transformers_engine import inspect_checkpoint
from ai.install.audit import ModelAudit
from ai.install.errors import CheckpointError, ManifestError, TargetError
from ai.install.files import read_record
from ai.install.manifest import MANIFEST_NAME, checkpoint_files, hash_file, parse_manifest
from ai.install.pointer import enabled_path, models_dir, pointer
from ai.settings import AiSettings


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


def gemma_check(path: Path) -> None:
    try:
        inspect_checkpoint(path)
    except EngineUnavailable as exc:
        raise CheckpointError(f"not enabled: {exc}") from None


def list_models(settings: AiSettings) -> list[InstalledModel]:
    """The checkpoint folders under ``models/`` (hidden entries and links left out)."""
    models = models_dir(settings)
    if not models.is_dir():
        return []
    current = enabled_path(settings)
    found: list[InstalledModel] = []
    for item in sorted(models.iterdir()):
        if item.name.startswith(".") or item.is_symlink() or not item.is_dir():
            continue
        data = read_record(item)
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


def verify_dir(path: Path, name: str) -> VerifyReport:
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


def verify_model(settings: AiSettings, audit: ModelAudit, name: str | None = None) -> VerifyReport:
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
    report = verify_dir(path, label)
    if report.ok:
        try:
            gemma_check(path)
        except CheckpointError as exc:
            report.problems.append(str(exc))
    audit(
        "model.verify",
        object_id=label,
        outcome="success" if report.ok else "failure",
        detail={"files": report.files, "bytes": report.bytes, "problems": len(report.problems)},
    )
    return report
