"""Noticing removable media appear and disappear under the mount roots (``/media``,
``/run/media``, ``/mnt``), by polling: needs no privileges and no udev.
"""

from __future__ import annotations

import os
import pwd
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from appliance.dicom.media.files import find_dicomdir, ignored_dir
from appliance.logs import get_logger

log = get_logger("radiant.media")

COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Media:
    """A mounted medium: where, its label (the folder name), whether it has a DICOMDIR, and its
    file count (None when over :data:`COUNT_LIMIT` files or unreadable: too costly to count)."""

    path: Path
    label: str
    has_dicomdir: bool
    file_count: int | None


@dataclass(frozen=True)
class MediaEvent:
    kind: Literal["appeared", "disappeared"]
    media: Media


def _count_files(root: Path) -> int | None:
    """Files under ``root`` (hidden and system folders left out); None past the limit."""
    limit = COUNT_LIMIT
    count = 0
    try:
        for _dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not ignored_dir(d)]
            count += len(filenames)
            if count > limit:
                return None
    except OSError:
        return None
    return count


def _non_empty(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


def _is_user_folder(folder: Path, root: Path) -> bool:
    """``/media/<user>`` or ``/run/media/<user>`` (udisks2 mounts media one level below)."""
    if os.path.ismount(folder):
        return False
    if root.name == "media" and root.parent.name == "run":
        return True
    try:
        pwd.getpwnam(folder.name)
    except KeyError:
        return False
    return True


def scan_media(roots: Iterable[Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """Media folders under the mount roots: ``<root>/<label>`` or ``<root>/<user>/<label>``.

    A folder counts when it is a mount point or is not empty (an empty ``/mnt/cdrom`` is a
    mount point waiting for a disc). Folders that hold or lie in an excluded path (the
    appliance's own data disk) are left out. Needs no privileges and no udev.
    """
    excluded = [Path(os.path.realpath(p)) for p in exclude]
    found: list[Path] = []

    def consider(folder: Path) -> None:
        if folder.is_symlink() or not folder.is_dir():
            return
        if not (os.path.ismount(folder) or _non_empty(folder)):
            return
        real = Path(os.path.realpath(folder))
        if any(ex.is_relative_to(real) or real.is_relative_to(ex) for ex in excluded):
            return
        found.append(folder)

    for root in roots:
        try:
            children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            continue
        for child in children:
            if _is_user_folder(child, root):
                try:
                    grandchildren = sorted(child.iterdir())
                except OSError:
                    continue
                for grandchild in grandchildren:
                    consider(grandchild)
            else:
                consider(child)
    return found


def describe_media(path: Path) -> Media:
    """What the screen shows for a medium (cheap: a bounded file count)."""
    return Media(
        path=path,
        label=path.name,
        has_dicomdir=find_dicomdir(path) is not None,
        file_count=_count_files(path),
    )


class MediaWatcher:
    """Polls the mount roots every ``interval_s`` and tells listeners when media appear or
    disappear; :meth:`current` is the list of media now present."""

    def __init__(
        self,
        roots: Sequence[Path],
        interval_s: float = 2.0,
        *,
        exclude: Iterable[Path] = (),
    ) -> None:
        self.roots = list(roots)
        self.interval_s = interval_s
        self.exclude = list(exclude)
        self.listeners: list[Callable[[MediaEvent], None]] = []
        self._media: dict[Path, Media] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> list[Media]:
        with self._lock:
            return sorted(self._media.values(), key=lambda m: str(m.path))

    def poll(self) -> list[MediaEvent]:
        """Scan once; update :meth:`current`, call the listeners and return the events."""
        present = scan_media(self.roots, self.exclude)
        with self._lock:
            known = dict(self._media)
        events: list[MediaEvent] = []
        for path in present:
            if path not in known:
                events.append(MediaEvent("appeared", describe_media(path)))
        present_set = set(present)
        for path, media in known.items():
            if path not in present_set:
                events.append(MediaEvent("disappeared", media))
        with self._lock:
            for event in events:
                if event.kind == "appeared":
                    self._media[event.media.path] = event.media
                else:
                    self._media.pop(event.media.path, None)
        for event in events:
            log.info(
                "media_" + event.kind,
                dicomdir=event.media.has_dicomdir,
                files=event.media.file_count,
            )
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("media_listener_failed")
        return events

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="media-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.poll()
            except Exception:
                log.exception("media_poll_failed")
            if self._stop.wait(self.interval_s):
                return
