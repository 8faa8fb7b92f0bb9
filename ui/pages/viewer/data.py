"""The viewer's reads: the study and its analysis, series slices, renders and thumbnails.

Images are rendered on the server by the studies and volumes services: one audit row per
series opened; its slices render unaudited."""

from __future__ import annotations

from appliance.analysis import completeness
from appliance.analysis import service as analysis_service
from appliance.analysis.models import AnalysisOut
from appliance.studies import service as studies
from appliance.studies.models import PreviewImage, StudyDetail
from appliance.volumes import service as volumes
from ui import runtime, session
from ui.pages.viewer.state import Slice


def load_study(
    study_id: str, user: session.SessionUser
) -> tuple[StudyDetail, AnalysisOut | None]:
    db = runtime.get().db()
    study = studies.get_study(db, study_id, user.actor)
    found = analysis_service.study_analyses(db, study_id, user.actor)
    done = [a for a in found if a.status in ("completed", "needs_review")]
    return study, (done[0] if done else None)


def arrival(study_id: str) -> completeness.Arrival:
    rt = runtime.get()
    return completeness.arrival(rt.db(), study_id, rt.settings.stable_age_s)


def load_slices(series_id: str, user: session.SessionUser) -> list[Slice]:
    # One audit row per series opened (series.view); its slices render unaudited.
    instances = studies.view_series(runtime.get().db(), series_id, user.actor)
    return [Slice(inst, frame) for inst in instances for frame in range(max(1, inst.frames))]


def reload_slices(series_id: str) -> list[Slice]:
    # The open series grew (a study still arriving): already audited when it was opened.
    instances = studies.reread_viewed_series(runtime.get().db(), series_id)
    return [Slice(inst, frame) for inst in instances for frame in range(max(1, inst.frames))]


def render(
    item: Slice, preset: str, window: tuple[float, float] | None, user: session.SessionUser
) -> PreviewImage:
    rt = runtime.get()
    center, width = window if window is not None else (None, None)
    return studies.instance_preview(
        rt.db(), rt.ctx.store, item.instance.id, user.actor, frame=item.frame, preset=preset,
        center=center, width=width, audited=False,
    )



def thumbnail(series_id: str, user: session.SessionUser) -> bytes | None:
    try:
        return volumes.series_thumbnail(runtime.get().ctx, series_id, user.actor)
    except Exception:
        return None


