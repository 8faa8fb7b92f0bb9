"""Local object store: files (DICOM instances, exports) written durably under the data dir,
and the files of indexed instances (:mod:`appliance.storage.instances`: read one, fetched back
from the bucket when evicted; evict). The fetch-back itself is injected by the sync layer."""

from appliance.storage.instances import Evictable, evict, instance_path
from appliance.storage.models import FetchBack, FileUnavailable, NotKeptHere, StoredObject
from appliance.storage.service import ObjectStore, UnsafeKey, instance_key, uid_segment

__all__ = [
    "Evictable",
    "FetchBack",
    "FileUnavailable",
    "NotKeptHere",
    "ObjectStore",
    "StoredObject",
    "UnsafeKey",
    "evict",
    "instance_key",
    "instance_path",
    "uid_segment",
]
