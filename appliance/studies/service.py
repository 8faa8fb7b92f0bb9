"""Reading the study index: worklist, study, series, instances, original files and previews.

Every read of patient data is audited with our ids only (``study.list``, ``study.read``,
``series.list``, ``instance.list``, ``instance.file``, ``instance.preview``); search text,
names and file names never enter the audit log. Ingest itself is audited by the ingestor
(``dicom.store`` per instance, ``dicom.quarantine`` per refused file); :func:`record_upload`
adds one ``study.upload`` row per web upload with its counts.

Where each part is: :mod:`~appliance.studies.reads` (studies, series, instances),
:mod:`~appliance.studies.files` (original files, previews), :mod:`~appliance.studies.worklist`
(the worklist projection: a read model across domains), :mod:`~appliance.studies.upload_record`
(the upload audit row, the screen's upload), :mod:`~appliance.studies.rows` (rows as models),
:mod:`~appliance.studies.study_facts` and :mod:`~appliance.studies.series_facts` (unaudited
internal reads other domains use: ids, dates, counts, geometry; their callers audit).
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
from appliance.studies.series_facts import (
    InstanceFile,
    InstanceRef,
    SeriesFacts,
    SeriesRef,
    instance_files,
    instances_in_display_order,
    require_series,
    series_facts,
    series_modality,
    series_ref,
    series_uids,
)
from appliance.studies.study_facts import (
    PatientIdentity,
    StudyArrival,
    StudyDates,
    comparison_prior,
    patient_identity,
    patient_studies_with_modality,
    require_study,
    study_arrival,
    study_dates,
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
    "InstanceFile",
    "InstanceRef",
    "PatientIdentity",
    "SeriesFacts",
    "SeriesRef",
    "StudyArrival",
    "StudyDates",
    "comparison_prior",
    "get_study",
    "index_counts",
    "ingest_uploaded",
    "instance_file",
    "instance_files",
    "instance_preview",
    "instances_in_display_order",
    "order_instances",
    "patient_identity",
    "patient_studies",
    "patient_studies_with_modality",
    "record_upload",
    "require_series",
    "require_study",
    "reread_viewed_series",
    "series_by_uid",
    "series_facts",
    "series_instances",
    "series_modality",
    "series_ref",
    "series_uids",
    "study_arrival",
    "study_dates",
    "study_of_series",
    "study_series",
    "view_series",
    "worklist",
    "worklist_fingerprint",
    "worklist_states",
]
