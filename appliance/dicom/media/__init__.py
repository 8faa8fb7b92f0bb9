"""DICOM from removable media: the DICOMDIR (:mod:`.dicomdir`), the folder walk
(:mod:`.walk`), read-only file access (:mod:`.files`), the import (:mod:`.importer`) and the
mount watcher (:mod:`.watcher`). The names callers use are re-exported here."""

from appliance.dicom.media.dicomdir import DicomdirInvalid, dicomdir_references
from appliance.dicom.media.importer import (
    NOT_DICOM,
    FileIssue,
    ImportProgress,
    ImportSummary,
    MediaError,
    import_media,
)
from appliance.dicom.media.walk import APPLEDOUBLE, MEDIA_INDEX, MEDIA_INDEX_OBJECT
from appliance.dicom.media.watcher import Media, MediaEvent, MediaWatcher, scan_media

__all__ = [
    "APPLEDOUBLE",
    "MEDIA_INDEX",
    "MEDIA_INDEX_OBJECT",
    "NOT_DICOM",
    "DicomdirInvalid",
    "FileIssue",
    "ImportProgress",
    "ImportSummary",
    "Media",
    "MediaError",
    "MediaEvent",
    "MediaWatcher",
    "dicomdir_references",
    "import_media",
    "scan_media",
]
