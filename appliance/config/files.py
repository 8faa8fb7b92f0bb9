"""The data dir and the box's secret key: checked and made before anything else runs."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from appliance.config.base import ENV_PREFIX, ConfigError
from appliance.config.settings import Settings

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)


def prepare_data_dir(settings: Settings) -> Path:
    """Create the data dir and prove it is writable; ConfigError names RADIANT_DATA_DIR."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The data dir holds PHI: only the appliance's own user may enter it.
        if path.stat().st_uid == os.geteuid() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o700)
        probe = path / f".write-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(
            f"configuration error: {ENV_PREFIX}DATA_DIR: {path} is not a writable directory "
            f"({reason})"
        ) from None
    return path.resolve()


def ensure_secret_key(settings: Settings) -> str:
    """The signing secret: the configured one, else the one generated into the data dir.

    The file is created once, 0600, and reused; a file readable by others is tightened to 0600.
    """
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.data_dir / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise ConfigError(
                f"configuration error: {ENV_PREFIX}SECRET_KEY: {path} is damaged "
                "(shorter than 32 characters); restore it from backup"
            ) from None
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
