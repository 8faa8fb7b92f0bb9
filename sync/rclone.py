"""rclone for the files: the generated config and the commands the worker, fetch-back, the
snapshots and restore run.

The config (``<data_dir>/sync/rclone.conf``, 0600; never the user's home) has two remotes:
``store`` (the bucket: s3 or azureblob, told never to create buckets) and ``files``, the crypt
remote over ``store:<bucket>/<prefix>/files`` (names and contents encrypted on the box with the
passphrase and salt of :mod:`sync.crypt_keys`, written obscured by ``rclone obscure``). With
``RADIANT_SYNC_ENCRYPT=false`` ``files`` is a plain alias of that folder.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import Settings
from sync import binaries, crypt_keys, layout
from sync.identity import sync_prefix

STORE = "store"
FILES = "files"
# Exit codes (rclone docs, "Exit code"): 3 directory not found, 4 file not found,
# 5 temporary error, 6 less serious error, 7 fatal error.
EXIT_DIR_NOT_FOUND = 3
# Uploads in flight at once in one batch (encryption runs on the box, one stream each)
UPLOAD_TRANSFERS = 4
COMMON_FLAGS = (
    "--ask-password=false",
    "--contimeout",
    "5s",
    "--timeout",
    "60s",
    "--low-level-retries",
    "3",
    "--retries",
    "1",
)


class RcloneError(Exception):
    """An rclone command failed; ``detail`` is its last error line (no secrets)."""

    def __init__(self, command: str, code: int, detail: str) -> None:
        super().__init__(f"rclone {command} failed (exit {code}): {detail}")
        self.command = command
        self.code = code
        self.detail = detail


def _quote(value: str) -> str:
    if any(ch in value for ch in "\n\r"):
        raise ValueError("config values cannot hold line breaks")
    return value


def obscure(secret: str, settings: Settings) -> str:
    """``rclone obscure`` of ``secret`` (read from stdin, never put on a command line)."""
    result = subprocess.run(
        [binaries.find("rclone"), "obscure", "-"],
        input=secret,
        capture_output=True,
        text=True,
        env=binaries.child_env(settings),
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        raise RcloneError("obscure", result.returncode, _last_line(result.stderr))
    return result.stdout.strip()


def config_text(settings: Settings, prefix: str, keys: crypt_keys.CryptKeys | None) -> str:
    """The rclone.conf for these settings (``keys`` None: files are not encrypted)."""
    lines = [f"[{STORE}]"]
    if settings.sync_remote == "s3":
        assert settings.sync_access_key is not None and settings.sync_secret_key is not None
        lines += [
            "type = s3",
            f"provider = {'Other' if settings.sync_endpoint else 'AWS'}",
            "env_auth = false",
            f"access_key_id = {_quote(settings.sync_access_key.get_secret_value())}",
            f"secret_access_key = {_quote(settings.sync_secret_key.get_secret_value())}",
            f"region = {_quote(settings.sync_region or 'us-east-1')}",
            "no_check_bucket = true",
        ]
        if settings.sync_endpoint:
            lines += [f"endpoint = {_quote(settings.sync_endpoint)}", "force_path_style = true"]
    elif settings.sync_remote == "azure":
        assert settings.sync_azure_key is not None
        lines += [
            "type = azureblob",
            f"account = {_quote(settings.sync_azure_account)}",
            f"key = {_quote(settings.sync_azure_key.get_secret_value())}",
            "no_check_container = true",
        ]
        if settings.sync_endpoint:
            lines.append(f"endpoint = {_quote(settings.sync_endpoint)}")
    else:
        raise ValueError("no remote configured (RADIANT_SYNC_REMOTE is empty)")
    root = f"{STORE}:{settings.sync_bucket}/{prefix}/{layout.FILES_FOLDER}"
    lines += ["", f"[{FILES}]"]
    if keys is None:
        lines += ["type = alias", f"remote = {root}"]
    else:
        lines += [
            "type = crypt",
            f"remote = {root}",
            "filename_encryption = standard",
            "directory_name_encryption = true",
            f"password = {obscure(keys.passphrase, settings)}",
            f"password2 = {obscure(keys.salt, settings)}",
        ]
    return "\n".join(lines) + "\n"


def write_config(
    settings: Settings, *, prefix: str | None = None, keys: crypt_keys.CryptKeys | None = None
) -> Path:
    """Generate ``<data_dir>/sync/rclone.conf`` (0600) from the settings and the crypt keys
    (generated on first use when encryption is on); returns its path."""
    if settings.sync_encrypt and keys is None:
        keys = crypt_keys.ensure(settings)
    text = config_text(
        settings, prefix or sync_prefix(settings), keys if settings.sync_encrypt else None
    )
    path = layout.rclone_config(settings)
    layout.write_private(path, text)
    return path


_STAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:ERROR|NOTICE|INFO|DEBUG)\s*:\s*")


def short_error(stderr: str, limit: int = 300) -> str:
    """The gist of rclone's error output: its last error line without the timestamp, and
    without the "Failed to ... last error was:" wrapper."""
    lines = [_STAMP.sub("", line.strip()) for line in stderr.splitlines() if line.strip()]
    chosen = ""
    for line in reversed(lines):
        if "error" in line.lower() or "failed" in line.lower():
            chosen = line
            break
    chosen = chosen or (lines[-1] if lines else "")
    _, marker, rest = chosen.partition("last error was: ")
    text = (rest if marker else chosen).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_line(stderr: str) -> str:
    return short_error(stderr, 400) or "no output"


# rclone's text log line for a passed hash check (``-vv``): "<date> <time> DEBUG : <object>: md5 =
# <hex> OK". The object is everything up to the last ": <hash> = "; keys never hold a line break.
_HASH_OK = re.compile(
    r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? DEBUG : (?P<object>.+): "
    r"(?:md5|sha1|sha256|crc32|whirlpool|quickxor|dropbox) = [0-9a-fA-F]+ OK$"
)


def confirmed_uploads(log_file: Path) -> set[str]:
    """Objects with a "<hash> = <hex> OK" line in an rclone debug log (see ``copy_confirmed``).

    The plain text log, not ``--use-json-log``: on 2,120 files encoding the debug log as JSON
    cost rclone about a tenth of its CPU time (bench-sync, 2-core machine)."""
    confirmed: set[str] = set()
    if not log_file.exists():
        return confirmed
    with log_file.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.endswith(" OK\n"):
                continue
            match = _HASH_OK.match(line.rstrip("\n"))
            if match is not None:
                confirmed.add(match["object"])
    return confirmed


@dataclass
class Rclone:
    """Runs rclone with the generated config of one data dir."""

    settings: Settings

    @property
    def config(self) -> Path:
        return layout.rclone_config(self.settings)

    @property
    def bucket_root(self) -> str:
        """``store:<bucket>/<prefix>``: this box's folder, unencrypted view."""
        return f"{STORE}:{self.settings.sync_bucket}/{sync_prefix(self.settings)}"

    def run(
        self, *args: str, timeout: float = 3600, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``rclone ARGS`` with the generated config; RcloneError when it fails and ``check``."""
        command = [
            binaries.find("rclone"),
            "--config",
            str(self.config),
            *COMMON_FLAGS,
            *args,
        ]
        try:
            result = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                text=True,
                env=binaries.child_env(self.settings),
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise RcloneError(args[0], -1, f"no answer within {timeout:g} s") from None
        if check and result.returncode != 0:
            raise RcloneError(args[0], result.returncode, _last_line(result.stderr))
        return result

    def probe(self, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """List this box's folder one level deep (cheap); exit 3 means no such bucket."""
        return self.run(
            "lsf",
            self.bucket_root,
            "--max-depth",
            "1",
            "--contimeout",
            "3s",
            "--timeout",
            "10s",
            "--low-level-retries",
            "1",
            timeout=timeout,
            check=False,
        )

    def copy_files(self, source: Path, list_file: Path, dest: str) -> None:
        """Copy the files named in ``list_file`` (relative to ``source``) to ``dest``."""
        self.run(
            "copy",
            str(source),
            dest,
            "--files-from",
            str(list_file),
            "--no-traverse",
            "--transfers",
            "4",
            "--checkers",
            "8",
        )

    def copy_confirmed(self, source: Path, list_file: Path, dest: str, log_file: Path) -> set[str]:
        """Copy the files named in ``list_file`` (relative to ``source``) to ``dest`` with
        ``UPLOAD_TRANSFERS`` uploads at once, and return those whose upload rclone confirmed by
        hash: through crypt, the MD5 of the encrypted stream it sent against the one the
        bucket reports for the stored object (a mismatch deletes the object and fails the
        file); without crypt, the local file's hash against the stored object's. Files rclone
        skipped as already there, or stored without a hash to compare (large multipart
        uploads), are not in the set: :meth:`verify` must check those. The debug log
        (``log_file``, appended to) is where rclone says "<hash> = <hex> OK" per file."""
        self.run(
            "copy",
            str(source),
            dest,
            "--files-from",
            str(list_file),
            "--transfers",
            str(UPLOAD_TRANSFERS),
            "--checkers",
            str(UPLOAD_TRANSFERS * 2),
            "--log-level",
            "DEBUG",
            "--log-file",
            str(log_file),
        )
        return confirmed_uploads(log_file)

    def verify(self, source: Path, list_file: Path, combined: Path) -> None:
        """Compare the listed local files with their remote copies (size and hash):
        ``cryptcheck`` through crypt, ``check`` otherwise; the outcome per file is written to
        ``combined`` (``=`` same, ``*`` differs, ``-`` missing remotely, ``!`` error)."""
        command = "cryptcheck" if self.settings.sync_encrypt else "check"
        result = self.run(
            command,
            str(source),
            f"{FILES}:",
            "--files-from",
            str(list_file),
            "--one-way",
            "--combined",
            str(combined),
            check=False,
        )
        if result.returncode != 0 and not combined.exists():
            raise RcloneError(command, result.returncode, _last_line(result.stderr))

    def fetch(self, key: str, dest: Path) -> None:
        """Copy one file (queue key) from the bucket to ``dest``."""
        self.run("copyto", f"{FILES}:{key}", str(dest), timeout=1800)

    def fetch_for_reader(self, key: str, dest: Path) -> None:
        """:meth:`fetch` for someone waiting (fetch-back of an evicted file): one low-level
        try, so an unreachable bucket is known in about a second (three tries with the S3
        client's backoff take some 16 s); the reader may simply ask again."""
        self.run("copyto", "--low-level-retries", "1", f"{FILES}:{key}", str(dest), timeout=1800)

    def upload(self, path: Path, key: str) -> None:
        self.run("copyto", str(path), f"{FILES}:{key}", timeout=3600)

    def list_json(self, remote: str, *flags: str) -> list[dict[str, Any]]:
        result = self.run("lsjson", remote, *flags, timeout=600)
        value = json.loads(result.stdout or "[]")
        return value if isinstance(value, list) else []

    def copy_files_back(self, list_file: Path, dest: Path) -> None:
        """Copy the listed files (keys) from the ``files`` remote into ``dest``."""
        self.run(
            "copy",
            f"{FILES}:",
            str(dest),
            "--files-from",
            str(list_file),
            "--no-traverse",
            "--transfers",
            "4",
            "--checkers",
            "8",
        )
