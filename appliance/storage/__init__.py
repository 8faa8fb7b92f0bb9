"""Local object store: files (DICOM instances, exports) written durably under the data dir."""

from appliance.storage.models import StoredObject
from appliance.storage.service import ObjectStore, UnsafeKey, instance_key, uid_segment

__all__ = ["ObjectStore", "StoredObject", "UnsafeKey", "instance_key", "uid_segment"]
