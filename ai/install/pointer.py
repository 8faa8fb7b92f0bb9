"""The enabled-model link: ``settings.ai_model_path`` (``RADIANT_AI_MODEL_DIR``) is a symbolic
link to ``models/<name>``, swapped atomically (a new link renamed over the old one); a checkpoint
copied there by hand (a real folder) is moved aside the first time another model is enabled.
Also the rules for a model's name."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from ai.install.errors import TargetError
from ai.install.manifest import Manifest
from ai.settings import AiSettings
from radiant_common.durable import fsync_dir

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def models_dir(settings: AiSettings) -> Path:
    return settings.models_root()


def pointer(settings: AiSettings) -> Path:
    """The path the transformers engine loads (absolute, its last component not resolved)."""
    path = settings.ai_model_path
    return path.parent.resolve() / path.name


def inside_models(settings: AiSettings, path: Path) -> bool:
    return path.parent == models_dir(settings).resolve()


def enabled_path(settings: AiSettings) -> Path | None:
    """Where the pointer leads (a real folder for a checkpoint copied by hand), or None."""
    link = pointer(settings)
    if link.is_symlink():
        target = Path(os.readlink(link))
        target = (link.parent / target) if not target.is_absolute() else target
        return target.parent.resolve() / target.name if target.is_dir() else None
    return link if link.is_dir() else None


def enabled_name(settings: AiSettings) -> str | None:
    """The name of the enabled model under ``models/``, or None."""
    target = enabled_path(settings)
    if target is None or not inside_models(settings, target):
        return None
    return target.name


def check_name(settings: AiSettings, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise TargetError(
            f"{name!r} is not a model name (1-100 letters, digits, '.', '_', '+', '-'; not "
            "starting with a dot)"
        )
    link = pointer(settings)
    if inside_models(settings, link) and name == link.name:
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


def check_pointer(settings: AiSettings) -> None:
    """Refuse, before fetching anything, a pointer this installer may not replace."""
    link = pointer(settings)
    if link.is_symlink() or not link.exists():
        if not link.parent.is_dir():
            raise TargetError(
                f"RADIANT_AI_MODEL_DIR={link}: its folder {link.parent} does not exist"
            )
        return
    if link.is_dir() and inside_models(settings, link):
        return  # a checkpoint copied by hand: moved aside when another model is enabled
    raise TargetError(
        f"RADIANT_AI_MODEL_DIR={link} is a {'folder' if link.is_dir() else 'file'} outside "
        f"{models_dir(settings)}; `radiant model` enables a model by making that path a link: "
        "move it away or unset RADIANT_AI_MODEL_DIR"
    )


def switch_pointer(settings: AiSettings, name: str) -> str | None:
    """Point the engine's path at ``models/<name>`` atomically; returns the previous name."""
    link = pointer(settings)
    target = models_dir(settings).resolve() / name
    previous = enabled_name(settings)
    value = name if inside_models(settings, link) else str(target)
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
    fsync_dir(link.parent)
    return previous
