"""App slots on the app partition (``/opt/radiant`` on the image)::

    <apps>/<version>/venv/            the app and its Python packages (a venv of the OS's python3)
    <apps>/<version>/libexec/         the watchdog probe of that version
    <apps>/<version>/release.json     the verified release it came from (schema_version)
    <apps>/current -> <version>       the active slot: one symlink, swapped with rename(2)
    <apps>/venv -> current/venv, <apps>/libexec -> current/libexec   what the units run

A slot is built under ``.<version>.partial`` and renamed when complete, so a power cut leaves
either no slot or a whole one; the switch writes a new link beside ``current`` and renames it
over (atomic on POSIX), then fsyncs the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from provisioning.update.release import RELEASE_DOC, Release, parse_version
from radiant_common.durable import fsync_dir

CURRENT = "current"


class SlotError(Exception):
    """A slot cannot be installed or switched (one line)."""


class Slots:
    """The slots under ``apps``; ``python`` is the interpreter new venvs are made from."""

    def __init__(self, apps: Path, python: str = "/usr/bin/python3") -> None:
        self.apps = apps
        self.python = python

    def current(self) -> str | None:
        """The active slot's version (None when there is no ``current`` link)."""
        link = self.apps / CURRENT
        return os.readlink(link) if link.is_symlink() else None

    def versions(self) -> list[str]:
        found = []
        for path in self.apps.iterdir() if self.apps.is_dir() else []:
            if path.is_dir() and not path.is_symlink() and not path.name.startswith("."):
                try:
                    parse_version(path.name)
                except ValueError:
                    continue
                found.append(path.name)
        return sorted(found, key=parse_version)

    def schema_version(self, version: str) -> int | None:
        """The highest migration a slot's release ships (None when the slot has no
        release.json, e.g. the image's factory slot: see :meth:`record_schema`)."""
        try:
            doc = json.loads((self.apps / version / RELEASE_DOC).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        value = doc.get("schema_version") if isinstance(doc, dict) else None
        return value if isinstance(value, int) else None

    def venv_bin(self, version: str, name: str) -> Path:
        return self.apps / version / "venv" / "bin" / name

    def install(self, release: Release, bundle: Path) -> Path:
        """A complete slot for a verified release (offline pip install of its wheels)."""
        final = self.apps / release.version
        if release.version == self.current():
            raise SlotError(f"slot {release.version} is the active one")
        shutil.rmtree(final, ignore_errors=True)
        partial = self.apps / f".{release.version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        venv = partial / "venv"
        self._run([self.python, "-m", "venv", "--without-pip", str(venv)], "venv")
        # The new slot's interpreter is the OS's; pip runs from this (the updating) slot.
        requirement = f"{release.document['app']}=={release.version}"
        pip = [
            sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "--quiet", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
            "--find-links", str(bundle / "wheels"),
        ]  # fmt: skip
        self._run([*pip, requirement], "pip install")
        if release.no_deps:  # medspaCy and the like: without their published pins
            self._run([*pip, "--no-deps", *release.no_deps], "pip install --no-deps")
        current = self.current()
        libexec = self.apps / current / "libexec" if current else None
        if libexec is not None and libexec.is_dir():
            shutil.copytree(libexec, partial / "libexec")
        (partial / RELEASE_DOC).write_text(
            json.dumps(release.document, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        self._fix_paths(partial, final)
        self._sync_tree(partial)
        os.rename(partial, final)
        fsync_dir(self.apps)
        return final

    def _fix_paths(self, old: Path, new: Path) -> None:
        """Rewrite the venv's absolute paths (pyvenv.cfg, script shebangs) to the final name
        before the rename."""
        old_text, new_text = str(old), str(new)
        for path in [old / "venv" / "pyvenv.cfg", *(old / "venv" / "bin").iterdir()]:
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if old_text.encode() in data[:4096]:
                path.write_bytes(data.replace(old_text.encode(), new_text.encode()))

    def switch(self, version: str) -> None:
        """Point ``current`` at ``version`` atomically (and ``venv``/``libexec`` through it)."""
        if not (self.apps / version / "venv").is_dir():
            raise SlotError(f"no slot {version}")
        tmp = self.apps / f".{CURRENT}.new"
        tmp.unlink(missing_ok=True)
        os.symlink(version, tmp)
        os.replace(tmp, self.apps / CURRENT)
        for name in ("venv", "libexec"):
            link = self.apps / name
            if not link.is_symlink():
                os.symlink(f"{CURRENT}/{name}", link)
        fsync_dir(self.apps)

    def remove(self, version: str) -> None:
        if version == self.current():
            raise SlotError(f"slot {version} is the active one")
        shutil.rmtree(self.apps / version, ignore_errors=True)
        fsync_dir(self.apps)

    @staticmethod
    def _run(command: list[str], what: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SlotError(f"{what} failed: {tail[0][:300]}")

    @staticmethod
    def _sync_tree(root: Path) -> None:
        """fsync every file and folder under ``root`` (a slot is durable before it is used)."""
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    continue
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(Path(folder))
