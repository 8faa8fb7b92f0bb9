"""The rclone crypt passphrase and salt: generated once into ``<data_dir>/sync/crypt.json``
(0600) and shown to the administrator by ``radiant sync passphrase``.

Without these two values the encrypted files in the bucket cannot be read; a replacement box
is restored with them (``radiant restore --from-remote --passphrase-stdin``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass

from appliance.config import Settings
from sync import layout


class KeysError(Exception):
    """The keys file is damaged or the given keys are malformed."""


@dataclass(frozen=True)
class CryptKeys:
    passphrase: str
    salt: str

    def __repr__(self) -> str:  # never print the secrets by accident
        return "CryptKeys(***)"

    def lines(self) -> str:
        """The two lines an administrator keeps (and pastes back on restore)."""
        return f"passphrase: {self.passphrase}\nsalt: {self.salt}\n"


def generate() -> CryptKeys:
    return CryptKeys(secrets.token_urlsafe(32), secrets.token_urlsafe(32))


def load(settings: Settings) -> CryptKeys | None:
    """The stored keys, or None when none were generated yet."""
    path = layout.crypt_keys(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = CryptKeys(str(data["passphrase"]), str(data["salt"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise KeysError(f"{path} is damaged; restore it from the administrator's copy") from None
    if len(keys.passphrase) < 16 or len(keys.salt) < 16:
        raise KeysError(f"{path} is damaged; restore it from the administrator's copy")
    return keys


def store(settings: Settings, keys: CryptKeys) -> None:
    layout.write_private(
        layout.crypt_keys(settings),
        json.dumps({"passphrase": keys.passphrase, "salt": keys.salt}) + "\n",
    )


def ensure(settings: Settings) -> CryptKeys:
    """The stored keys, generated on first use (created exclusively: never replaced)."""
    existing = load(settings)
    if existing is not None:
        return existing
    keys = generate()
    path = layout.crypt_keys(settings)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        found = load(settings)
        assert found is not None
        return found
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"passphrase": keys.passphrase, "salt": keys.salt}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return keys


def parse(text: str) -> CryptKeys:
    """Keys from the two lines of ``radiant sync passphrase`` (labelled or bare, in order)."""
    values: dict[str, str] = {}
    bare: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        label, colon, rest = line.partition(":")
        if colon and label.strip().lower() in ("passphrase", "salt"):
            values[label.strip().lower()] = rest.strip()
        elif " " not in line:
            bare.append(line)
    if "passphrase" not in values and bare:
        values["passphrase"] = bare.pop(0)
    if "salt" not in values and bare:
        values["salt"] = bare.pop(0)
    if len(values.get("passphrase", "")) < 16 or len(values.get("salt", "")) < 16:
        raise KeysError(
            "give the two lines printed by `radiant sync passphrase` (passphrase: ..., salt: ...)"
        )
    return CryptKeys(values["passphrase"], values["salt"])
