"""The DICOMDIR of a file-set on media (PS3.10 8; the Basic Directory IOD, PS3.3 Annex F).

Its directory records form a tree (PATIENT > STUDY > SERIES > IMAGE, PS3.3 F.4) linked by byte
offsets (PS3.3 F.3.2.1), and the instance-level records name their file by a Referenced File ID:
path components relative to the DICOMDIR's folder (PS3.10 8.2). The tree is read here (with
``dcmread``) rather than through ``pydicom.fileset.FileSet``, because ``FileSet`` refuses the
whole file-set when one reference leaves the media, silently drops references to missing files
and reads orphaned records' files: here every reference is judged on its own and reported.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import pydicom
from pydicom.fileset import DIRECTORY_RECORDERS

from appliance.dicom.limits import Refused, check_structure
from appliance.dicom.media.files import (
    Item,
    OutsideMedia,
    Unreadable,
    fold_name,
    inside,
    read_media_file,
    stat_item,
)
from appliance.dicom.reading import MEDIA_STORAGE_DIRECTORY

# PS3.3 F.5 record types; the retired ones still appear on old CDs.
_RETIRED_RECORD_TYPES = {
    "OVERLAY",
    "MODALITY LUT",
    "VOI LUT",
    "CURVE",
    "TOPIC",
    "VISIT",
    "RESULTS",
    "INTERPRETATION",
    "STUDY COMPONENT",
    "STORED PRINT",
    "HL7 STRUC DOC",
    "MRDR",
}
_RECORD_TYPES = set(DIRECTORY_RECORDERS) | {"PRIVATE"} | _RETIRED_RECORD_TYPES
# The levels of the Basic Directory Information Model (PS3.3 F.4): a record's required parent.
_PARENT = {"PATIENT": None, "STUDY": "PATIENT", "SERIES": "STUDY", "IMAGE": "SERIES"}


class DicomdirInvalid(Exception):
    """The DICOMDIR cannot be trusted as an index of the media; the message says why."""


def dicomdir_references(ds: pydicom.Dataset) -> list[tuple[str, ...]]:
    """Referenced File IDs (as path components) of the records reachable from the root.

    Walks the record tree by its offsets (PS3.3 F.3.2.1) and checks it against the Basic
    Directory Information Model (PS3.3 F.4, F.5). Raises :class:`DicomdirInvalid`.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None or str(meta.get("MediaStorageSOPClassUID", "")) != MEDIA_STORAGE_DIRECTORY:
        raise DicomdirInvalid("it is not a Media Storage Directory (PS3.10 8.6)")
    sequence = ds.get("DirectoryRecordSequence")
    if not sequence:
        raise DicomdirInvalid("it has no directory records")
    records = {record.seq_item_tell: record for record in sequence}
    first = int(ds.get("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity", 0) or 0)
    if not first:
        raise DicomdirInvalid("it does not say where its first directory record is")
    references: list[tuple[str, ...]] = []
    seen_refs: set[tuple[str, ...]] = set()
    visited: set[int] = set()
    # Depth first in the DICOMDIR's own order: a record, its lower level, then its next sibling.
    stack: list[tuple[int, str | None]] = [(first, None)]
    while stack:
        offset, parent = stack.pop()
        if not offset:
            continue
        if offset in visited:
            raise DicomdirInvalid("its directory records form a loop")
        visited.add(offset)
        record = records.get(offset)
        if record is None:
            raise DicomdirInvalid(f"a record offset ({offset}) points to no directory record")
        kind = str(record.get("DirectoryRecordType", "")).strip()
        if kind not in _RECORD_TYPES:
            shown = "".join(ch for ch in kind[:16] if ch.isprintable())
            raise DicomdirInvalid(f"a directory record has the invalid type {shown!r} (PS3.3 F.5)")
        if kind in _PARENT and _PARENT[kind] != parent:
            where = f"under a {parent} record" if parent else "at the top level"
            article = "an" if kind[:1] in "AEIOU" else "a"
            raise DicomdirInvalid(f"{article} {kind} record is {where} (PS3.3 F.4)")
        components = _file_id(record)
        if components and components not in seen_refs:
            seen_refs.add(components)
            references.append(components)
        stack.append((int(record.get("OffsetOfTheNextDirectoryRecord", 0) or 0), parent))
        stack.append((int(record.get("OffsetOfReferencedLowerLevelDirectoryEntity", 0) or 0), kind))
    if not references:
        raise DicomdirInvalid("it references no files")
    return references


def _file_id(record: pydicom.Dataset) -> tuple[str, ...]:
    value = record.get("ReferencedFileID")
    if value in (None, ""):
        return ()
    parts = [value] if isinstance(value, str) else list(value)
    return tuple(str(part).rstrip(" \x00") for part in parts)


def _check_file_id(components: tuple[str, ...]) -> None:
    """PS3.10 8.2: a File ID is a relative path of plain components; refuse anything else."""
    first = components[0]
    if first.startswith(("/", "\\")) or (len(first) >= 2 and first[1] == ":"):
        raise OutsideMedia("is an absolute path, not a File ID inside the media")
    for part in components:
        if part == "..":
            raise OutsideMedia("leaves the media ('..' in the File ID)")
        if part in ("", ".") or any(ch in part for ch in "/\\\x00"):
            raise OutsideMedia("is not a valid File ID (PS3.10 8.2)")


class _Resolver:
    """Finds a File ID's file: exact names first, then ISO 9660 folded names (see
    :func:`_fold`); listings are cached."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[Path, dict[str, str]] = {}

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            names: dict[str, str] = {}
            try:
                for name in sorted(os.listdir(folder)):
                    names.setdefault(fold_name(name), name)
            except OSError:
                pass
            self._listings[folder] = names
        return self._listings[folder]

    def locate(self, components: tuple[str, ...]) -> Path:
        current = self.root
        for index, part in enumerate(components):
            if os.path.lexists(current / part):
                current = current / part
                continue
            match = self._listing(current).get(fold_name(part))
            if match is None:
                return current.joinpath(*components[index:])
            current = current / match
        return current


def plan_dicomdir(root: Path, dicomdir: Path, limit: int) -> list[Item]:
    """Items for the files the DICOMDIR references. Raises :class:`DicomdirInvalid`."""
    try:
        real = inside(root, dicomdir)
        data = read_media_file(real, limit)
    except OutsideMedia:
        raise DicomdirInvalid("it is a symbolic link pointing outside the media") from None
    except Unreadable as exc:
        raise DicomdirInvalid(str(exc)) from None
    assert data is not None
    try:
        check_structure(data)
    except Refused as exc:
        raise DicomdirInvalid(exc.reason) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings may quote values (PHI)
            ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types on garbage
        raise DicomdirInvalid(f"it cannot be parsed ({exc.__class__.__name__})") from None
    try:
        references = dicomdir_references(ds)
    except DicomdirInvalid:
        raise
    except Exception as exc:  # records are converted lazily: garbage raises here
        raise DicomdirInvalid(f"its records cannot be read ({exc.__class__.__name__})") from None
    resolver = _Resolver(root)
    items: list[Item] = []
    seen: set[Path] = set()
    for components in references:
        rel = "/".join(components)
        try:
            _check_file_id(components)
        except OutsideMedia as exc:
            items.append(Item(rel, None, 0, True, refused=str(exc)))
            continue
        item = stat_item(root, rel, resolver.locate(components), referenced=True)
        if item.real is not None:
            if item.real in seen:
                continue
            seen.add(item.real)
        items.append(item)
    return items
