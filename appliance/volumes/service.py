"""Building, storing, listing and rendering the volumes of a series.

:func:`build_for_series` reads the series' instance files from the object store (through the
index: every instance must be kept locally), runs :func:`~appliance.volumes.reconstruct.
build_volumes` and stores each volume as NIfTI under ``volumes/<series_id>/<volume_id>.nii.gz``
with one ``volumes`` row: geometry, dtype, QA notes, label and status ``ready``. Images that are
not a volume (radiographs, lone slices, mixed orientations) give a ``not_applicable`` row with
the reason; an input that cannot be reconstructed gives one ``failed`` row with the error.

Rebuilding REPLACES: the new files are written first, then one transaction deletes the series'
old rows and inserts the new ones, then the old files are removed. A reader sees either the
old set or the new one; a volume id from an older build answers 404 afterwards. Each row keeps
the ``fingerprint`` of the input (SHA-256 over the instances' SOP Instance UIDs and content
hashes and :data:`BUILDER_VERSION`), so :func:`current_volumes` can tell whether the stored
volumes still match the series (a new or replaced instance, or a new builder, makes them stale).

Audit (ids only): ``volume.build``, ``volume.request``, ``volume.read``, ``volume.list``,
``volume.nifti``, ``volume.slice``, ``volume.key_image``, ``series.thumbnail`` and, for the
CLI, ``volume.export``.

The work is split by job: :mod:`~appliance.volumes.records` (the ``volumes`` table, the
fingerprint), :mod:`~appliance.volumes.build` (building, the job, automatic builds),
:mod:`~appliance.volumes.viewing` (reads, NIfTI, slices, key image, thumbnails) and
:mod:`~appliance.volumes.export` (the CLI export). This module is the domain's service API:
callers import from here.
"""

from __future__ import annotations

from appliance.volumes.build import (
    JOB_KIND,
    SYSTEM,
    VOLUME_MODALITIES,
    Progress,
    auto_build_listener,
    build_for_series,
    current_or_build,
    request_build,
    volume_job,
)
from appliance.volumes.export import export_series, numbered_paths, series_by_uid
from appliance.volumes.records import (
    BUILDER_VERSION,
    PREFIX,
    current_volumes,
    fingerprint,
    main_volume,
    notes_of,
    volume_file,
    volume_key,
)
from appliance.volumes.viewing import (
    CACHE,
    CACHE_BYTES,
    VolumeCache,
    get_volume,
    key_image,
    series_thumbnail,
    series_volumes,
    volume_nifti,
    volume_slice,
)

__all__ = [
    "BUILDER_VERSION",
    "CACHE",
    "CACHE_BYTES",
    "JOB_KIND",
    "PREFIX",
    "SYSTEM",
    "VOLUME_MODALITIES",
    "Progress",
    "VolumeCache",
    "auto_build_listener",
    "build_for_series",
    "current_or_build",
    "current_volumes",
    "export_series",
    "fingerprint",
    "get_volume",
    "key_image",
    "main_volume",
    "notes_of",
    "numbered_paths",
    "request_build",
    "series_by_uid",
    "series_thumbnail",
    "series_volumes",
    "volume_file",
    "volume_job",
    "volume_key",
    "volume_nifti",
    "volume_slice",
]
