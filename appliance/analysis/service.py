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
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlite_utils

from ai.boxes import box_to_pixels, box_to_pixels_unpadded
from ai.confidence import assess_confidence
from ai.engines.base import Engine, EngineError, EngineRequest, EngineUnavailable, engine_parts
from ai.engines.none_engine import not_configured_message
from ai.engines.select import build_engine
from ai.imaging import PreparedImages, images_sha256, prepare_ct, prepare_mr, prepare_radiograph
from ai.parsing import parse_answer
from ai.prompts import (
    PromptRequest,
    SeriesInfo,
    build_comparison,
    build_focused,
    build_primary,
    select_series,
)
from ai.safety import SafeAnalysis, apply_safety
from ai.urgency import load_critical_list
from appliance.analysis import completeness, egress, refusals
from appliance.analysis.failures import failure_kind
from appliance.analysis.models import (
    AnalysisOut,
    AnalysisRequest,
    FindingOut,
    MeasurementOut,
)
from appliance.analysis.radiograph import (
    RADIOGRAPH_MODALITIES,
    NotARadiograph,
    Spacing,
    read_radiograph,
    read_view_position,
    view_rank,
)
from appliance.analysis.verdict import finding_flags, verdict
from appliance.audit import service as audit
from appliance.audit.models import Actor
from appliance.auth.models import Role
from appliance.config import Settings
from appliance.context import AppContext
from appliance.db.connection import transaction
from appliance.db.rows import new_id, now_iso
from appliance.errors import AppError, Forbidden, InvalidInput, NotFound
from appliance.jobs.models import Job, JobCancelled, JobFailed
from appliance.logs import get_logger
from appliance.system.mode import effective_mode
from appliance.triage import alerts as triage_alerts
from appliance.volumes import service as volumes
from appliance.volumes.nifti import read_nifti

log = get_logger("radiant.analysis")

JOB_KIND = "analysis"
SYSTEM = Actor.system("analysis")
VOLUME_MODALITIES = frozenset({"CT", "MR"})
#: Modalities that count as "the same" when looking for a prior study.
_MODALITY_GROUPS = {"CR": ("CR", "DX"), "DX": ("CR", "DX")}

EngineFactory = Callable[[], Engine]
Enqueue = Callable[[str, dict[str, Any], Actor], Any]


class EngineNotConfigured(AppError):
    """No AI engine: nothing is queued; the detail says what to configure."""

    status = 503
    title = "AI engine not configured"


def _rows(db: sqlite_utils.Database, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _one(db: sqlite_utils.Database, sql: str, params: Any, what: str) -> dict[str, Any]:
    found = _rows(db, sql, params)
    if not found:
        raise NotFound(f"{what} not found")
    return found[0]


# ---- requesting -------------------------------------------------------------------------------


def engine_settings(db: sqlite_utils.Database, settings: Settings) -> Settings:
    """The settings an engine is built from: ``RADIANT_MODE`` replaced by the runtime mode (the
    switch on the screen, ``radiant mode`` or the fleet), so one switch moves inference too."""
    mode = effective_mode(db, settings)
    return settings if mode is settings.mode else settings.model_copy(update={"mode": mode})


def current_engine(ctx: AppContext) -> Engine:
    """The engine the next model call uses, per :func:`engine_settings`."""
    return build_engine(engine_settings(ctx.pool.get(), ctx.settings))


def request_analysis(
    ctx: AppContext, body: AnalysisRequest, actor: Actor, enqueue: Enqueue
) -> tuple[str, str]:
    """Insert a queued analysis and its job; returns (analysis id, job id). Audited
    ``analysis.request``. 503 :class:`EngineNotConfigured` when the engine is ``none``."""
    db = ctx.pool.get()
    engine = current_engine(ctx)
    engine_name = engine.name
    engine.close()
    if engine_name == "none":
        audit.record(
            db,
            actor,
            "analysis.request",
            object_type="study",
            object_id=body.study_id,
            outcome="refused",
            detail={"reason": "no_engine"},
        )
        raise EngineNotConfigured(not_configured_message(ctx.settings.ai_model_path))
    study = _one(db, "SELECT id, patient_id FROM studies WHERE id = ?", (body.study_id,), "study")
    if body.series_id is not None:
        row = _one(db, "SELECT study_id FROM series WHERE id = ?", (body.series_id,), "series")
        if row["study_id"] != study["id"]:
            raise InvalidInput(f"series {body.series_id} is not part of study {body.study_id}")
    if body.prior_study_id is not None:
        if body.analysis_type != "comparison":
            raise InvalidInput("prior_study_id is for a comparison analysis")
        prior = _one(
            db, "SELECT patient_id FROM studies WHERE id = ?", (body.prior_study_id,), "prior study"
        )
        if prior["patient_id"] != study["patient_id"] or body.prior_study_id == study["id"]:
            raise InvalidInput("the prior study must be another study of the same patient")
    if body.analysis_type == "focused" and not (body.target or "").strip():
        raise InvalidInput("a focused analysis needs a target")
    arrived = completeness.arrival(db, body.study_id, ctx.settings.stable_age_s)
    partial = not arrived.complete
    if partial and (not body.analyse_partial or actor.role != Role.RADIOLOGIST.value):
        error: AppError = completeness.refusal(arrived)
        if body.analyse_partial:
            error = Forbidden("only a radiologist may analyse a study that is still arriving")
        audit.record(
            db,
            actor,
            "analysis.request",
            object_type="study",
            object_id=body.study_id,
            outcome="refused",
            detail={"reason": "study_incomplete", "instances": arrived.instances},
        )
        raise error
    analysis_id = new_id()
    with transaction(db):
        db.execute(
            "INSERT INTO analyses (id, study_id, series_id, prior_study_id, analysis_type,"
            " clinical_indication, target, status, stage, requested_by, created_at, partial,"
            " instance_count) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 'queued', ?, ?, ?, ?)",
            (
                analysis_id,
                body.study_id,
                body.series_id,
                body.prior_study_id,
                body.analysis_type,
                body.clinical_indication,
                body.target,
                actor.user_id,
                now_iso(),
                int(partial),
                arrived.instances,
            ),
        )
        audit.record(
            db,
            actor,
            "analysis.request",
            object_type="analysis",
            object_id=analysis_id,
            detail={
                "study_id": body.study_id,
                "analysis_type": body.analysis_type,
                "partial": partial,
                "instances": arrived.instances,
            },
        )
    payload = {"analysis_id": analysis_id, "actor": actor.name, "role": actor.role}
    queued = enqueue(JOB_KIND, payload, actor)
    return analysis_id, str(queued.job.id)


# ---- the job ----------------------------------------------------------------------------------


def _set(db: sqlite_utils.Database, analysis_id: str, **values: Any) -> None:
    columns = ", ".join(f"{name} = ?" for name in values)
    with transaction(db):
        db.execute(
            f"UPDATE analyses SET {columns} WHERE id = ?",  # noqa: S608 (names are ours)
            [*values.values(), analysis_id],
        )


def _series_info(db: sqlite_utils.Database, study_id: str) -> dict[str, SeriesInfo]:
    found: dict[str, SeriesInfo] = {}
    for row in _rows(db, "SELECT * FROM series WHERE study_id = ?", (study_id,)):
        first = _rows(
            db,
            "SELECT image_orientation, slice_thickness FROM instances WHERE series_id = ?"
            " ORDER BY instance_number IS NULL, instance_number LIMIT 1",
            (row["id"],),
        )
        iop = (
            json.loads(first[0]["image_orientation"])
            if first and first[0]["image_orientation"]
            else None
        )
        count, images = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(MAX(COALESCE(number_of_frames, 1), 1)), 0)"
            " FROM instances WHERE series_id = ?",
            (row["id"],),
        ).fetchone()
        found[row["id"]] = SeriesInfo(
            series_instance_uid=row["series_uid"],
            modality=row["modality"] or "",
            instance_count=int(count),
            image_count=int(images),
            series_description=row["description"] or "",
            series_number=row["series_number"],
            image_orientation_patient=tuple(iop) if iop and len(iop) == 6 else None,
            slice_thickness=first[0]["slice_thickness"] if first else None,
        )
    return found


def _modality_group(modality: str) -> tuple[str, ...]:
    return _MODALITY_GROUPS.get(modality.upper(), (modality.upper(),))


def choose_series(
    db: sqlite_utils.Database, study_id: str, modalities: tuple[str, ...] | None = None
) -> str:
    """The series of the study the model sees (selection rules as data): CT first, then MR,
    then the others, or only ``modalities`` (in that order) when given."""
    infos = _series_info(db, study_id)
    present = [info.modality.upper() for info in infos.values()]
    for modality in modalities or ("CT", "MR", *present):
        if modality not in present:
            continue
        chosen = select_series(list(infos.values()), modality)
        if chosen.series is not None:
            uid = chosen.series.series_instance_uid
            return next(k for k, v in infos.items() if v.series_instance_uid == uid)
    raise JobFailed(refusal_reasons(list(infos.values()), modalities or ("CT", "MR", *present)))


def refusal_reasons(infos: list[SeriesInfo], modalities: tuple[str, ...]) -> str:
    """Why no series of a study can be analysed, series by series, in plain words."""
    return refusals.words(refusals.series_refusals(infos, modalities))


def study_refusals(db: sqlite_utils.Database, study_id: str) -> list[refusals.SeriesRefusal]:
    """Why each series of the study is refused, as data (the screens translate it)."""
    infos = list(_series_info(db, study_id).values())
    present = [info.modality.upper() for info in infos]
    return refusals.series_refusals(infos, ("CT", "MR", *present))


def find_prior(db: sqlite_utils.Database, study_id: str, modality: str) -> str | None:
    """The latest earlier study of the same patient with the same modality, if any (CR and DX
    count as one: both are projection radiographs)."""
    study = _one(db, "SELECT * FROM studies WHERE id = ?", (study_id,), "study")
    group = _modality_group(modality)
    for row in _rows(
        db,
        "SELECT s.id, s.study_date, s.created_at FROM studies s WHERE s.patient_id = ?"
        " AND s.id != ? AND EXISTS (SELECT 1 FROM series x WHERE x.study_id = s.id"
        " AND UPPER(x.modality) IN (?, ?)) ORDER BY s.study_date DESC, s.created_at DESC",
        (study["patient_id"], study_id, group[0], group[-1]),
    ):
        if study["study_date"] and row["study_date"]:
            if row["study_date"] < study["study_date"]:
                return str(row["id"])
        elif row["created_at"] < study["created_at"]:
            return str(row["id"])
    return None


@dataclasses.dataclass(slots=True)
class _Prepared:
    """One series' model images and what is needed to map answers back to it.

    ``image_instance`` maps a 0-based image position in ``images`` to (instance id, 0-based
    index in the series' display order). CT/MR keep the volume's ``affine`` (LPS, mm) and
    ``shape`` (z, y, x); a radiograph keeps its ``spacing`` (its padding is in ``images``).
    """

    series_id: str
    modality: str
    images: PreparedImages
    shape: tuple[int, ...]
    image_instance: dict[int, tuple[str, int]]
    affine: np.ndarray[Any, Any] | None = None
    spacing: Spacing | None = None
    burned_in: bool = False  # an image has Burned In Annotation YES (see analysis.egress)

    def focused(self) -> _Prepared:
        """The same series reduced to the one image a focused prompt shows: a radiograph's only
        image, or the middle sampled slice of a volume."""
        if len(self.images.images) == 1:
            return self
        position = len(self.images.images) // 2
        image = dataclasses.replace(self.images.images[position], number=1, label=None)
        images = dataclasses.replace(
            self.images, images=(image,), sha256=images_sha256([image.data])
        )
        link = self.image_instance.get(position)
        return dataclasses.replace(self, images=images, image_instance={0: link} if link else {})


def _display_order(db: sqlite_utils.Database, series_id: str) -> list[dict[str, Any]]:
    return _rows(
        db,
        "SELECT id, image_position, storage_key, storage_state FROM instances"
        " WHERE series_id = ? ORDER BY instance_number IS NULL, instance_number, sop_instance_uid",
        (series_id,),
    )


def prepare_series(ctx: AppContext, series_id: str, job_id: str | None) -> _Prepared:
    """Turn a series into model images: a CT/MR volume (built if needed) or one radiograph."""
    db = ctx.pool.get()
    series = _one(db, "SELECT modality FROM series WHERE id = ?", (series_id,), "series")
    modality = str(series["modality"] or "").upper()
    if modality in RADIOGRAPH_MODALITIES:
        return _prepare_radiograph(ctx, series_id, modality)
    if modality not in VOLUME_MODALITIES:
        raise JobFailed(f"modality {modality or 'unknown'} is not analysed (CT, MR, CR and DX are)")
    return _prepare_volume(ctx, series_id, modality, job_id)


def _prepare_volume(
    ctx: AppContext, series_id: str, modality: str, job_id: str | None
) -> _Prepared:
    db = ctx.pool.get()
    built = volumes.current_volumes(db, series_id)
    if built is None:
        try:
            built = volumes.build_for_series(ctx, series_id, SYSTEM, job_id=job_id)
        except AppError as exc:
            raise JobFailed(exc.detail) from None
    ready = [v for v in built if v.status == "ready"]
    if not ready:
        reason = next((v.reason or v.error for v in built if v.reason or v.error), None)
        raise JobFailed(f"series {series_id} has no volume" + (f": {reason}" if reason else ""))
    row = _one(db, "SELECT storage_key FROM volumes WHERE id = ?", (ready[0].id,), "volume")
    volume = read_nifti(ctx.store.path(row["storage_key"]))
    voxels = np.asarray(volume.voxels)
    images = prepare_ct(voxels) if modality == "CT" else prepare_mr(voxels)
    affine = np.asarray(volume.affine_lps, dtype=np.float64)
    inverse = np.linalg.inv(affine)
    positions: list[tuple[float, str, int]] = []
    for order, inst in enumerate(_display_order(db, series_id)):
        if not inst["image_position"]:
            continue
        ipp = json.loads(inst["image_position"])
        z = float((inverse @ np.array([*map(float, ipp[:3]), 1.0]))[2])
        positions.append((z, inst["id"], order))
    image_instance: dict[int, tuple[str, int]] = {}
    if positions:
        for position, image in enumerate(images.images):
            z_index = image.slice_index
            if z_index is None:
                continue
            _, instance_id, order = min(positions, key=lambda p: abs(p[0] - z_index))
            image_instance[position] = (instance_id, order)
    return _Prepared(
        series_id=series_id,
        modality=modality,
        images=images,
        shape=tuple(int(n) for n in voxels.shape),
        image_instance=image_instance,
        affine=affine,
    )


def _prepare_radiograph(ctx: AppContext, series_id: str, modality: str) -> _Prepared:
    db = ctx.pool.get()
    ordered = _display_order(db, series_id)
    if not ordered:
        raise JobFailed(f"series {series_id} has no instances")
    local = [
        (order, row)
        for order, row in enumerate(ordered)
        if row["storage_state"] == "local" and ctx.store.path(row["storage_key"]).is_file()
    ]
    if not local:
        raise JobFailed(
            f"no image of series {series_id} is kept on this appliance (evicted or missing; "
            "run `radiant fsck`)"
        )
    order, chosen = min(
        local,
        key=lambda item: (
            view_rank(read_view_position(ctx.store.path(item[1]["storage_key"]))),
            item[0],
        ),
    )
    try:
        radiograph = read_radiograph(ctx.store.path(chosen["storage_key"]))
    except NotARadiograph as exc:
        raise JobFailed(f"instance {chosen['id']} cannot be analysed: {exc}") from None
    images = prepare_radiograph(radiograph.pixels, monochrome1=radiograph.inverted_here)
    images = dataclasses.replace(images, inverted=radiograph.monochrome1)
    return _Prepared(
        series_id=series_id,
        modality=modality,
        images=images,
        shape=tuple(int(n) for n in radiograph.pixels.shape),
        image_instance={0: (str(chosen["id"]), order)},
        spacing=radiograph.spacing,
        burned_in=radiograph.burned_in,
    )


def _box_json(box: Any, prepared: _Prepared) -> dict[str, Any]:
    out: dict[str, Any] = {
        "y0": box.y0,
        "x0": box.x0,
        "y1": box.y1,
        "x1": box.x1,
        "label": box.label,
    }
    padding = prepared.images.padding
    try:
        if padding is None:  # a volume slice, sent unpadded: each axis scales on its own
            pixels = box_to_pixels_unpadded(box, int(prepared.shape[-2]), int(prepared.shape[-1]))
        else:
            pixels = box_to_pixels(box, padding)
    except ValueError:
        return out
    out["pixels"] = {
        "row0": round(pixels.row0, 2),
        "col0": round(pixels.col0, 2),
        "row1": round(pixels.row1, 2),
        "col1": round(pixels.col1, 2),
        "clamped": pixels.clamped,
        "empty": pixels.empty,
    }
    spacing: tuple[float, float, str] | None = None
    if prepared.spacing is not None:
        spacing = (prepared.spacing.row_mm, prepared.spacing.col_mm, prepared.spacing.source)
    elif prepared.affine is not None:
        col_mm = float(np.linalg.norm(prepared.affine[:3, 0]))
        row_mm = float(np.linalg.norm(prepared.affine[:3, 1]))
        if col_mm > 0 and row_mm > 0:
            spacing = (row_mm, col_mm, "volume")
    if spacing is not None:
        row_mm, col_mm, source = spacing
        out["mm"] = {
            "width": round((pixels.col1 - pixels.col0) * col_mm, 2),
            "height": round((pixels.row1 - pixels.row0) * row_mm, 2),
            "spacing": source,
        }
    return out


def _image_link(prepared: _Prepared, slice_number: int | None) -> tuple[str, int] | None:
    """(instance id, display index) of the image a finding is on: the slice it names, else the
    only image sent (a radiograph, a focused slice)."""
    count = len(prepared.images.images)
    if slice_number is not None and 1 <= slice_number <= count:
        return prepared.image_instance.get(slice_number - 1)
    if count == 1:
        return prepared.image_instance.get(0)
    return None


def _store_results(
    db: sqlite_utils.Database, analysis_id: str, safe: SafeAnalysis, prepared: _Prepared
) -> int:
    now = now_iso()
    _set(db, analysis_id, safety=json.dumps(verdict(safe)))
    boxes: dict[int | None, list[Any]] = {}
    for box in safe.boxes:
        boxes.setdefault(box.finding_index, []).append(box)
    stored = 0
    with transaction(db):
        entries: list[tuple[Any, float, str, str | None, str | None, Any, list[Any]]] = []
        for finding in safe.findings:
            flags = finding_flags(finding)
            entries.append(
                (
                    finding,
                    finding.confidence.value,
                    finding.description,
                    finding.location,
                    finding.impression,
                    (boxes.get(finding.index) or [None])[0],
                    flags,
                )
            )
        for box in boxes.get(None, []):
            label = box.label or "Region of interest suggested by the model"
            assessed = assess_confidence(
                None, original_text=label, parse_repaired=False, narrative=False
            )
            flags = [f.model_dump(mode="json") for f in box.flags]
            entries.append((None, assessed.value, label, None, None, box, flags))
        for finding, confidence, description, location, impression, box, flags in entries:
            link = _image_link(prepared, finding.slice if finding is not None else None)
            instance_id, slice_index = link if link is not None else (None, None)
            finding_id = new_id()
            db.execute(
                "INSERT INTO findings (id, analysis_id, series_id, instance_id, slice_index,"
                " location, description, impression, confidence, box, flags, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    finding_id,
                    analysis_id,
                    prepared.series_id,
                    instance_id,
                    slice_index,
                    location,
                    description,
                    impression,
                    min(1.0, max(0.0, float(confidence))),
                    json.dumps(_box_json(box, prepared)) if box is not None else None,
                    json.dumps(flags),
                    now,
                ),
            )
            stored += 1
            for item in finding.measurements if finding is not None else ():
                if not isinstance(item.value, float | int):
                    continue
                db.execute(
                    "INSERT INTO measurements (id, finding_id, name, value, unit, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        new_id(),
                        finding_id,
                        item.name or "measurement",
                        float(item.value),
                        item.unit or "",
                        now,
                    ),
                )
    return stored


def _prompt(
    analysis: dict[str, Any], modality: str, count: int, prior_count: int, indication: str | None
) -> PromptRequest:
    kind = analysis["analysis_type"]
    if kind == "comparison":
        return build_comparison(
            modality=modality,
            prior_image_count=prior_count,
            current_image_count=count,
            clinical_indication=indication,
        )
    if kind == "focused":
        return build_focused(
            modality=modality,
            target=analysis["target"] or "",
            clinical_indication=indication,
        )
    return build_primary(modality=modality, image_count=count, clinical_indication=indication)


def run_analysis(
    ctx: AppContext,
    analysis_id: str,
    actor: Actor,
    job: Job | None,
    context: Any,
    engine_factory: EngineFactory,
) -> dict[str, Any]:
    """The pipeline of one analysis (see the module docstring)."""
    db = ctx.pool.get()
    analysis = _one(db, "SELECT * FROM analyses WHERE id = ?", (analysis_id,), "analysis")
    _set(db, analysis_id, status="running", stage="preparing", started_at=now_iso(), error=None)
    context.progress("preparing", 0.05)
    series_id = analysis["series_id"] or choose_series(db, analysis["study_id"])
    current = prepare_series(ctx, series_id, job.id if job else None)
    context.check_cancelled()
    prior: _Prepared | None = None
    prior_study = analysis["prior_study_id"]
    if analysis["analysis_type"] == "comparison":
        prior_study = prior_study or find_prior(db, analysis["study_id"], current.modality)
        if prior_study is None:
            raise JobFailed("no earlier study of this patient with the same modality to compare")
        prior_series = choose_series(db, prior_study, _modality_group(current.modality))
        prior = prepare_series(ctx, prior_series, job.id if job else None)
    _set(db, analysis_id, series_id=series_id, prior_study_id=prior_study)
    if analysis["analysis_type"] == "focused":
        current = current.focused()
    jpegs = [i.data for i in current.images.images]
    prior_jpegs = [i.data for i in prior.images.images] if prior else []
    burned_in = current.burned_in or (prior is not None and prior.burned_in)
    outbound = egress.plan(db, ctx.settings, actor, analysis, burned_in=burned_in)
    prompt = _prompt(analysis, current.modality, len(jpegs), len(prior_jpegs), outbound.indication)
    sha = images_sha256([*prior_jpegs, *jpegs])
    parts = engine_parts(prompt, jpegs, prior_jpegs)
    context.check_cancelled()
    _set(
        db,
        analysis_id,
        stage="inferring",
        prompt_id=prompt.template_id,
        prompt_version=str(prompt.template_version),
        images_sha256=sha,
    )
    context.progress("inferring", 0.3)
    engine = engine_factory()
    call = {
        "study_id": analysis["study_id"],
        "analysis_id": analysis_id,
        "prompt_id": prompt.template_id,
        "prompt_version": prompt.template_version,
        "images_sha256": sha,
        "image_count": len(jpegs) + len(prior_jpegs),
        "cloud": outbound.cloud,
        "scrub": list(outbound.scrub_actions),
        "burned_in": outbound.burned_in,
    }
    try:
        response = engine.generate(EngineRequest(parts=parts, request_id=analysis_id))
    except EngineError as exc:
        audit.record(
            db,
            actor,
            "analysis.model_call",
            object_type="analysis",
            object_id=analysis_id,
            outcome="failed",
            detail={**call, "engine": engine.name, "error": exc.__class__.__name__},
        )
        raise JobFailed(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        engine.close()
    audit.record(
        db,
        actor,
        "analysis.model_call",
        object_type="analysis",
        object_id=analysis_id,
        detail={
            **call,
            "engine": response.engine,
            "route": response.route,
            "model_id": response.model_id,
            "model_revision": response.model_revision,
            "latency_ms": round(response.latency_ms),
            "tokens_in": response.tokens_in,
            "tokens_out": response.tokens_out,
            "finish_reason": response.finish_reason,
            "fallback": response.fallback_reason is not None,
            "request_sha256": response.request_sha256,
        },
    )
    if outbound.cloud:
        _set(
            db,
            analysis_id,
            request_sha256=response.request_sha256,
            request_image_count=len(jpegs) + len(prior_jpegs),
            request_scrub=json.dumps(list(outbound.scrub_actions)),
        )
    context.check_cancelled()
    _set(db, analysis_id, stage="parsing")
    context.progress("parsing", 0.8)
    parsed = parse_answer(response.text, expect=prompt.expect, slice_count=len(jpegs))
    safe = apply_safety(parsed, load_critical_list(ctx.settings.triage_critical_list))
    count = _store_results(db, analysis_id, safe, current)
    urgency = safe.urgency.level if safe.urgency is not None else None
    status = "needs_review" if safe.needs_review else "completed"
    _set(
        db,
        analysis_id,
        status=status,
        stage="done",
        engine=response.engine,
        model_id=response.model_id,
        model_revision=response.model_revision,
        tokens_in=response.tokens_in,
        tokens_out=response.tokens_out,
        latency_ms=round(response.latency_ms),
        raw_output=response.text,
        overall_impression=safe.overall_impression,
        disclaimer=safe.disclaimer,
        verification_flag=safe.verification_flag,
        urgency=urgency,
        urgency_detail=safe.urgency.model_dump_json() if safe.urgency is not None else None,
        completed_at=now_iso(),
    )
    audit.record(
        db,
        actor,
        "analysis.complete",
        object_type="analysis",
        object_id=analysis_id,
        detail={"status": status, "findings": count, "urgency": urgency},
    )
    triage_alerts.raise_for(db, analysis_id)
    return {"analysis_id": analysis_id, "status": status, "findings": count}


def analysis_job(
    ctx: AppContext, engine_factory: EngineFactory | None = None
) -> Callable[[Job, Any], dict[str, Any]]:
    """The handler of ``analysis`` jobs (payload ``{"analysis_id", "actor", "role"}``)."""
    factory = engine_factory or (lambda: current_engine(ctx))

    def handle(job: Job, context: Any) -> dict[str, Any]:
        analysis_id = job.payload.get("analysis_id")
        if not isinstance(analysis_id, str) or not analysis_id:
            raise JobFailed("the payload names no analysis_id")
        db = ctx.pool.get()
        requested = _rows(db, "SELECT requested_by FROM analyses WHERE id = ?", (analysis_id,))
        actor = Actor(
            name=str(job.payload.get("actor") or SYSTEM.name),
            role=job.payload.get("role"),
            user_id=requested[0]["requested_by"] if requested else None,
        )
        try:
            return run_analysis(ctx, analysis_id, actor, job, context, factory)
        except JobCancelled:
            asked = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job.id,))
            row = asked.fetchone()
            if row and row[0]:
                _set(db, analysis_id, status="cancelled", stage="cancelled", completed_at=now_iso())
            else:  # the appliance is shutting down: the job fails, so does the analysis
                _fail(db, analysis_id, "interrupted by a shutdown")
            raise
        except EngineUnavailable as exc:
            _fail(db, analysis_id, str(exc))
            raise JobFailed(str(exc)) from None
        except JobFailed as exc:
            _fail(db, analysis_id, str(exc) or "failed")
            raise
        except Exception as exc:
            _fail(db, analysis_id, f"{exc.__class__.__name__}: {exc}")
            raise

    return handle


def _fail(db: sqlite_utils.Database, analysis_id: str, reason: str) -> None:
    _set(db, analysis_id, status="failed", error=reason[:2000], completed_at=now_iso())


def reconcile(db: sqlite_utils.Database, analysis_id: str | None = None) -> int:
    """Analyses still queued/running whose job ended failed or cancelled (a restart, a cancel
    before start) take the job's outcome and reason. Returns how many were fixed."""
    sql = (
        "SELECT a.id, j.status, j.error FROM analyses a JOIN jobs j ON j.kind = ?"
        " AND json_extract(j.payload, '$.analysis_id') = a.id"
        " WHERE a.status IN ('queued', 'running') AND j.status IN ('failed', 'cancelled')"
    )
    params: list[Any] = [JOB_KIND]
    if analysis_id is not None:
        sql += " AND a.id = ?"
        params.append(analysis_id)
    fixed = 0
    for row in _rows(db, sql, params):
        status = "cancelled" if row["status"] == "cancelled" else "failed"
        _set(
            db,
            row["id"],
            status=status,
            stage=status,
            error=row["error"] or status,
            completed_at=now_iso(),
        )
        fixed += 1
    return fixed


def auto_analysis_listener(ctx: AppContext, enqueue: Enqueue) -> Callable[[Any], None]:
    """A StabilityMonitor listener: a stable study gets a primary analysis when
    ``RADIANT_AI_AUTO`` is on (and an engine is configured)."""

    def on_stable(event: Any) -> None:
        if event.kind != "study" or not ctx.settings.ai_auto:
            return
        db = ctx.pool.get()
        if db.execute(
            "SELECT 1 FROM analyses WHERE study_id = ? AND analysis_type = 'primary'"
            " AND partial = 0",
            (event.id,),
        ).fetchone():
            return
        try:
            request_analysis(ctx, AnalysisRequest(study_id=event.id), SYSTEM, enqueue)
        except AppError as exc:
            log.info("analysis_auto_skipped", study_id=event.id, reason=exc.title)

    return on_stable


# ---- reading ----------------------------------------------------------------------------------


def _out(db: sqlite_utils.Database, row: dict[str, Any]) -> AnalysisOut:
    findings = []
    for item in _rows(
        db, "SELECT * FROM findings WHERE analysis_id = ? ORDER BY created_at, rowid", (row["id"],)
    ):
        measures = _rows(
            db,
            "SELECT id, name, value, unit FROM measurements WHERE finding_id = ?"
            " ORDER BY created_at, rowid",
            (item["id"],),
        )
        findings.append(
            FindingOut(
                id=item["id"],
                series_id=item["series_id"],
                instance_id=item["instance_id"],
                slice_index=item["slice_index"],
                location=item["location"],
                description=item["description"],
                impression=item["impression"],
                confidence=float(item["confidence"]),
                box=json.loads(item["box"]) if item["box"] else None,
                flags=json.loads(item["flags"]) if item["flags"] else [],
                review_state=item["review_state"],
                measurements=[MeasurementOut(**m) for m in measures],
            )
        )
    fields = {k: row[k] for k in AnalysisOut.model_fields if k in row and k != "findings"}
    fields["partial"] = bool(row.get("partial"))
    stored = json.loads(row["safety"]) if row.get("safety") else {}
    fields["review_reasons"] = stored.get("review_reasons", [])
    fields["overall_flags"] = stored.get("overall_flags", [])
    fields["repairs"] = stored.get("repairs", [])
    if row["status"] == "failed":
        fields["failure"] = failure_kind(row.get("error"))
    return AnalysisOut(**fields, findings=findings)


def analysis_status(db: sqlite_utils.Database, analysis_id: str) -> str | None:
    """The status alone (queued, running, ...; None if unknown): no patient data and no model
    output, so a screen polls it unaudited and reads the result once, audited."""
    reconcile(db, analysis_id)
    row = db.execute("SELECT status FROM analyses WHERE id = ?", (analysis_id,)).fetchone()
    return str(row[0]) if row else None


def get_analysis(db: sqlite_utils.Database, analysis_id: str, actor: Actor) -> AnalysisOut:
    """One analysis with its findings; audited ``analysis.read``."""
    reconcile(db, analysis_id)
    found = _rows(db, "SELECT * FROM analyses WHERE id = ?", (analysis_id,))
    if not found:
        audit.record(
            db,
            actor,
            "analysis.read",
            object_type="analysis",
            object_id=analysis_id,
            outcome="not_found",
        )
        raise NotFound(f"analysis {analysis_id} not found")
    audit.record(db, actor, "analysis.read", object_type="analysis", object_id=analysis_id)
    return _out(db, found[0])


def study_analyses(db: sqlite_utils.Database, study_id: str, actor: Actor) -> list[AnalysisOut]:
    """The analyses of a study, newest first; audited ``analysis.list``."""
    _one(db, "SELECT id FROM studies WHERE id = ?", (study_id,), "study")
    reconcile(db)
    found = [
        _out(db, r)
        for r in _rows(
            db, "SELECT * FROM analyses WHERE study_id = ? ORDER BY created_at DESC", (study_id,)
        )
    ]
    audit.record(
        db,
        actor,
        "analysis.list",
        object_type="study",
        object_id=study_id,
        detail={"returned": [a.id for a in found]},
    )
    return found


def engine_info(
    settings: Settings, db: sqlite_utils.Database | None = None
) -> dict[str, str | bool | None]:
    """What the configured engine is (name, model, endpoint; no secrets), for status screens;
    with ``db``, for the runtime mode. Nothing is loaded or contacted."""
    engine = build_engine(settings if db is None else engine_settings(db, settings))
    try:
        info = dict(engine.describe())
        info["name"] = engine.name
        return info
    finally:
        engine.close()
