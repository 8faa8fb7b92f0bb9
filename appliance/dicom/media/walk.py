"""Walking media that has no (valid) DICOMDIR: every file under the media's folder, hidden
and system folders left out; which of them are DICOM is decided when each is read (the ``DICM``
prefix at byte 128, PS3.10 7.1).
"""

from __future__ import annotations

import os
from pathlib import Path

from appliance.dicom.media.files import (
    DICOMDIR,
    Item,
    describe,
    fold_name,
    ignored_dir,
    stat_item,
)

APPLEDOUBLE = "macOS metadata file ('._' name), not DICOM"
MEDIA_INDEX = "a DICOMDIR (media index), not an instance"
MEDIA_INDEX_OBJECT = (
    "a DICOMDIR-class object (Media Storage Directory Storage, 1.2.840.10008.1.3.10):"
    " a media index, not an instance"
)


def plan_walk(root: Path) -> list[Item]:
    """Items for every file under ``root`` (hidden and system folders left out), sorted.

    Files named DICOMDIR are skipped: a media index is not an instance (when the import walks,
    the top one was found invalid).
    """
    items: list[Item] = []

    def unreadable_folder(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        rel = where.relative_to(root).as_posix() if where.is_relative_to(root) else "."
        reason = describe(exc).replace("cannot read", "cannot list the folder", 1)
        items.append(Item(rel + "/", None, 0, False, error=reason))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable_folder):
        dirnames[:] = sorted(d for d in dirnames if not ignored_dir(d))
        folder = Path(dirpath)
        for name in sorted(filenames):
            candidate = folder / name
            rel = candidate.relative_to(root).as_posix()
            if name.startswith("._"):
                items.append(Item(rel, None, 0, False, skipped=APPLEDOUBLE))
            elif fold_name(name) == DICOMDIR.casefold():
                items.append(Item(rel, None, 0, False, skipped=MEDIA_INDEX))
            else:
                items.append(stat_item(root, rel, candidate, referenced=False))
    return items
