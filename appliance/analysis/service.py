"""Analyses: request one (a row plus a persisted ``analysis`` job), run it, read it back.

The job (:func:`analysis_job`) chooses the series (:func:`ai.prompts.select_series` unless one
was given), prepares the images (:mod:`ai.imaging`), builds the prompt, calls the engine, parses
the answer and passes it through :func:`ai.safety.apply_safety` (the only way model text is
stored). Stages: preparing -> inferring -> parsing.

- CT / MR: the series' volume (built if needed), at most 85 slices, each labelled ``SLICE n``.
- CR / DX: ONE image of the series (frontal first, :mod:`appliance.analysis.radiograph`),
  padded to a square and sent alone (no label), as DESIGN.md's prompt rules say.

Findings keep the box in the safety layer's 0..1000 ``{y0, x0, y1, x1}`` form plus ``pixels``
(edge coordinates of the ORIGINAL image: for a radiograph mapped back through the square
padding) and ``mm`` sizes when the spacing is known (CT/MR: the volume; radiograph: Pixel
Spacing, else Imager Pixel Spacing, named in ``mm.spacing``); ``instance_id`` and
``slice_index`` (0-based in the series' display order) link a finding to the image it is on.

Every model call is audited ``analysis.model_call`` with ids only (no PHI). A job that fails,
is cancelled or is interrupted by a restart leaves its analysis ``failed`` / ``cancelled`` with
the reason (:func:`reconcile`), never ``running``.

Where each part is: :mod:`~appliance.analysis.request` (checks, the queued row, automatic
requests), :mod:`~appliance.analysis.selection` (series, prior), :mod:`~appliance.analysis.
preparation` (model images), :mod:`~appliance.analysis.pipeline` (one run),
:mod:`~appliance.analysis.geometry` and :mod:`~appliance.analysis.results` (what is stored),
:mod:`~appliance.analysis.job` (the job, reconciliation), :mod:`~appliance.analysis.reads`
(reading back), :mod:`~appliance.analysis.engine` (which engine), :mod:`~appliance.analysis.
store` (rows). This module is the domain's service API: callers import from here.
"""

from __future__ import annotations

from appliance.analysis.engine import EngineFactory, current_engine, engine_info, engine_settings
from appliance.analysis.job import analysis_job, reconcile
from appliance.analysis.pipeline import run_analysis
from appliance.analysis.preparation import VOLUME_MODALITIES, Prepared, prepare_series
from appliance.analysis.reads import analysis_status, get_analysis, study_analyses
from appliance.analysis.request import (
    EngineNotConfigured,
    Enqueue,
    auto_analysis_listener,
    request_analysis,
)
from appliance.analysis.selection import (
    choose_series,
    find_prior,
    refusal_reasons,
    study_refusals,
)
from appliance.analysis.store import JOB_KIND, SYSTEM

__all__ = [
    "JOB_KIND",
    "SYSTEM",
    "VOLUME_MODALITIES",
    "EngineFactory",
    "EngineNotConfigured",
    "Enqueue",
    "Prepared",
    "analysis_job",
    "analysis_status",
    "auto_analysis_listener",
    "choose_series",
    "current_engine",
    "engine_info",
    "engine_settings",
    "find_prior",
    "get_analysis",
    "prepare_series",
    "reconcile",
    "refusal_reasons",
    "request_analysis",
    "run_analysis",
    "study_analyses",
    "study_refusals",
]
