"""Reading the study index: worklist, study, series, instances, original files and previews.

Every read of patient data is audited with our ids only (``study.list``, ``study.read``,
``series.list``, ``instance.list``, ``instance.file``, ``instance.preview``); search text,
names and file names never enter the audit log. Ingest itself is audited by the ingestor
(``dicom.store`` per instance, ``dicom.quarantine`` per refused file); :func:`record_upload`
adds one ``study.upload`` row per web upload with its counts.

Where each part is: :mod:`~appliance.studies.reads` (studies, series, instances),
:mod:`~appliance.studies.files` (original files, previews), :mod:`~appliance.studies.worklist`
(the worklist projection: a read model across domains), :mod:`~appliance.studies.upload_record`
(the upload audit row, the screen's upload), :mod:`~appliance.studies.rows` (rows as models).
This module is the domain's service API: callers import from here.
"""

from __future__ import annotations

from appliance.studies.files import instance_file, instance_preview
from appliance.studies.reads import (
    get_study,
    index_counts,
    order_instances,
    patient_studies,
    reread_viewed_series,
    series_by_uid,
    series_instances,
    study_of_series,
    study_series,
    view_series,
)
from appliance.studies.upload_record import ingest_uploaded, record_upload
from appliance.studies.worklist import (
    URGENCY_LEVELS,
    worklist,
    worklist_fingerprint,
    worklist_states,
)

__all__ = [
    "URGENCY_LEVELS",
    "get_study",
    "index_counts",
    "ingest_uploaded",
    "instance_file",
    "instance_preview",
    "order_instances",
    "patient_studies",
    "record_upload",
    "reread_viewed_series",
    "series_by_uid",
    "series_instances",
    "study_of_series",
    "study_series",
    "view_series",
    "worklist",
    "worklist_fingerprint",
    "worklist_states",
]
