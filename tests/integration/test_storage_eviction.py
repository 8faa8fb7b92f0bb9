"""An evicted study opens every way, against ``rclone serve s3`` (the bucket), the recording
OpenAI-protocol server (the engine) and pynetdicom (the C-GET requester).

A head CT and a chest radiograph are uploaded and verified by a real sync round, then their
DICOM files are evicted (rows ``remote``, files gone). Before each way of opening, the study is
evicted again, so each way on its own must fetch the files back through the storage layer:
the original file, the viewer's rendered slice, a volume build, an analysis, DICOMweb WADO-RS
(instance and frames) and a C-GET. With the bucket stopped, the same reads answer a clear 503
problem (DICOM: a failed sub-operation naming the instance), never a 500.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
)

from appliance.app import create_app
from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.config import Mode, Settings
from appliance.context import AppContext, prepare
from sync import eviction
from sync.manager import SyncManager
from tests.ai_server import CXR, AIServer, Scripted, chat_completion
from tests.reporting import CT_SET, ingest_ct, settle
from tests.servers import free_port
from tests.sync_servers import Remote, rclone_s3, sha256

pytestmark = pytest.mark.integration
ACTOR = Actor.system("test")
PASSWORD = "eviction-password"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DATA = Path(__file__).resolve().parents[1] / "data"
CT_FILES = sorted((DATA / CT_SET).glob("*.dcm"))
ANSWER = (
    "```json\n"
    '{"findings": [{"description": "Possible opacity in the right upper zone.", '
    '"location": "right upper lobe", "impression": "Possible consolidation.", '
    '"confidence": 0.6, "measurements": [], "slice": null}], '
    '"overall_impression": "Possible right upper lobe consolidation."}\n'
    "```"
)


class Box:
    """The app under test, its database and the ids of the two studies."""

    def __init__(self, client: TestClient, ctx: AppContext, settings: Settings) -> None:
        self.client = client
        self.ctx = ctx
        self.settings = settings
        self.headers: dict[str, dict[str, str]] = {}
        db = ctx.pool.get()
        ct_row, cxr_row = (
            db.execute(
                "SELECT st.id, st.study_uid, se.id, se.series_uid FROM studies st"
                " JOIN series se ON se.study_id = st.id WHERE se.modality = ?",
                (modality,),
            ).fetchone()
            for modality in ("CT", "DX")
        )
        self.ct_study, self.ct_study_uid, self.ct_series, self.ct_series_uid = map(str, ct_row)
        self.cxr_study, _, self.cxr_series, _ = map(str, cxr_row)

    def login(self, username: str) -> dict[str, str]:
        if username not in self.headers:
            answer = self.client.post(
                "/api/auth/token", data={"username": username, "password": PASSWORD}
            )
            assert answer.status_code == 200, answer.text
            self.headers[username] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        return self.headers[username]

    def instances(self, study_id: str) -> list[dict[str, Any]]:
        rows = self.ctx.pool.get().execute(
            "SELECT i.id, i.sop_instance_uid, i.storage_key, i.sha256, i.storage_state"
            " FROM instances i JOIN series s ON s.id = i.series_id WHERE s.study_id = ?"
            " ORDER BY i.instance_number, i.sop_instance_uid",
            (study_id,),
        ).fetchall()
        names = ("id", "sop", "key", "sha256", "state")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def evict(self, study_id: str) -> list[dict[str, Any]]:
        """Evict the study's local files; checks every row is remote and every file gone."""
        local = sum(1 for i in self.instances(study_id) if i["state"] == "local")
        done = eviction.evict_study(self.ctx, study_id)
        found = self.instances(study_id)
        assert done.files == local > 0
        assert {i["state"] for i in found} == {"remote"}
        assert not any(self.ctx.store.path(i["key"]).exists() for i in found)
        return found

    def state(self, instance_id: str) -> str:
        row = self.ctx.pool.get().execute(
            "SELECT storage_state FROM instances WHERE id = ?", (instance_id,)
        ).fetchone()
        return str(row[0])

    def wait(self, url: str) -> dict[str, Any]:
        """Poll a job or an analysis until it is no longer queued or running."""
        viewer = self.login("viewer")
        for _ in range(1200):
            body: dict[str, Any] = self.client.get(url, headers=viewer).json()
            if body["status"] not in ("queued", "running"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"{url} did not finish: {body}")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Box, Remote, AIServer]]:
    with (
        AIServer(default=Scripted(body=chat_completion(ANSWER))) as ai,
        rclone_s3(tmp_path / "server") as remote,
    ):
        settings = remote.settings(
            tmp_path / "data",
            mode=Mode.ONLINE,
            evict_free_gb=0,
            ai_engine="openai",
            ai_endpoint=ai.url,
            ai_max_attempts=1,
            ai_timeout_s=60,
            dicom_host="127.0.0.1",
            dicom_port=free_port(),
            dicom_peers="GETSCU@127.0.0.1:9",
        )
        ctx = prepare(settings)
        try:
            ingest_ct(ctx)
            stored = ctx.ingestor.ingest(CXR.read_bytes(), source="test", actor=ACTOR)
            assert stored.outcome == "stored", stored
            settle(ctx.pool.get())
            manager = SyncManager(ctx)
            manager.run_round()  # uploads and verifies every file in the bucket
            assert manager.last_drain is not None
            assert manager.last_drain.uploaded == len(CT_FILES) + 1
            manager.stop()
            for name, role in (("viewer", Role.VIEWER), ("tech", Role.TECHNICIAN)):
                auth_service.create_user(
                    ctx.pool.get(), UserCreate(username=name, password=PASSWORD, role=role), ACTOR
                )
        finally:
            ctx.pool.close_all()
        app = create_app(settings, with_ui=False, with_receiver=True)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Box(client, app.state.ctx, settings), remote, ai


def c_get(box: Box, level: str, **keys: str) -> tuple[int, list[bytes], Dataset | None]:
    """C-GET as the peer GETSCU; the final status, the data sets received, the identifier."""
    received: list[bytes] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.encoded_dataset(include_meta=False))
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, [EXPLICIT_LE])
    assoc = ae.associate(
        "127.0.0.1",
        box.settings.dicom_port,
        ae_title=box.settings.dicom_ae_title,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    try:
        responses = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    final, identifier = responses[-1]
    return int(final.Status), received, identifier


def test_an_evicted_study_opens_every_way(box: tuple[Box, Remote, AIServer]) -> None:
    app, _remote, ai = box
    viewer, tech = app.login("viewer"), app.login("tech")
    client = app.client
    originals = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in CT_FILES}

    # the original file
    instance = app.evict(app.ct_study)[0]
    answer = client.get(f"/api/instances/{instance['id']}/file", headers=viewer)
    assert answer.status_code == 200, answer.text
    assert sha256(answer.content) == instance["sha256"]
    assert app.state(instance["id"]) == "local"
    assert app.ctx.store.path(instance["key"]).is_file()

    # the viewer's rendered slice
    instance = app.evict(app.ct_study)[5]
    answer = client.get(f"/api/instances/{instance['id']}/preview.png", headers=viewer)
    assert answer.status_code == 200, answer.text
    assert answer.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert app.state(instance["id"]) == "local"

    # a volume build
    evicted = app.evict(app.ct_study)
    answer = client.post("/api/volumes", json={"series_id": app.ct_series}, headers=tech)
    assert answer.status_code == 202, answer.text
    job = app.wait(answer.json()["status_url"])
    assert job["status"] == "done", job
    volumes = client.get(f"/api/series/{app.ct_series}/volumes", headers=viewer).json()
    assert volumes and all(v["status"] == "ready" for v in volumes), volumes
    assert {app.state(i["id"]) for i in evicted} == {"local"}

    # an analysis (a radiograph: the engine gets the evicted image itself)
    (cxr,) = app.evict(app.cxr_study)
    answer = client.post("/api/analysis", json={"study_id": app.cxr_study}, headers=tech)
    assert answer.status_code == 202, answer.text
    analysis = app.wait(f"/api/analysis/{answer.json()['analysis_id']}")
    assert analysis["status"] in ("completed", "needs_review"), analysis
    assert analysis["series_id"] == app.cxr_series
    assert len(ai.requests) == 1
    assert app.state(cxr["id"]) == "local"

    # DICOMweb WADO-RS: an instance, then a frame of another
    evicted = app.evict(app.ct_study)
    wado = f"/dicom-web/studies/{app.ct_study_uid}/series/{app.ct_series_uid}/instances"
    first, second = evicted[0], evicted[1]
    answer = client.get(
        f"{wado}/{first['sop']}",
        headers={**viewer, "Accept": 'multipart/related; type="application/dicom"'},
    )
    assert answer.status_code == 200, answer.text
    assert originals[first["sop"]].read_bytes() in answer.content
    answer = client.get(
        f"{wado}/{second['sop']}/frames/1",
        headers={**viewer, "Accept": 'multipart/related; type="application/octet-stream"'},
    )
    assert answer.status_code == 200, answer.text
    pixels = pydicom.dcmread(originals[second["sop"]]).PixelData
    assert pixels in answer.content
    assert app.state(first["id"]) == app.state(second["id"]) == "local"

    # C-GET of the whole study (pynetdicom as the requester)
    app.evict(app.ct_study)
    status, received, _ = c_get(app, "STUDY", StudyInstanceUID=app.ct_study_uid)
    assert status == 0x0000 and len(received) == len(CT_FILES)
    for payload in received:
        sop = pydicom.dcmread(io.BytesIO(payload), force=True, stop_before_pixels=True)
        assert originals[sop.SOPInstanceUID].read_bytes().endswith(payload)
    assert {i["state"] for i in app.instances(app.ct_study)} == {"local"}

    fetched = app.ctx.pool.get().execute(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'sync.fetch'"
    ).fetchone()[0]
    assert fetched == 1 + 1 + len(CT_FILES) + 1 + 2 + len(CT_FILES)


def test_an_unreachable_bucket_answers_a_clear_error(box: tuple[Box, Remote, AIServer]) -> None:
    app, remote, _ = box
    viewer, client = app.login("viewer"), app.client
    evicted = app.evict(app.ct_study)
    remote.stop()
    instance = evicted[2]
    for url in (
        f"/api/instances/{instance['id']}/file",
        f"/api/instances/{instance['id']}/preview.png",
        f"/dicom-web/studies/{app.ct_study_uid}/series/{app.ct_series_uid}"
        f"/instances/{instance['sop']}",
    ):
        answer = client.get(url, headers=viewer)
        assert answer.status_code == 503, (url, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "could not be reached" in answer.json()["detail"], answer.json()
    status, received, identifier = c_get(
        app,
        "IMAGE",
        StudyInstanceUID=app.ct_study_uid,
        SeriesInstanceUID=app.ct_series_uid,
        SOPInstanceUID=instance["sop"],
    )
    assert status == 0xA702 and received == []
    assert identifier is not None
    assert identifier.FailedSOPInstanceUIDList == instance["sop"]  # one value: not a list
    assert app.state(instance["id"]) == "remote"
    assert not app.ctx.store.path(instance["key"]).exists()
    assert not [p for p in app.ctx.store.path(instance["key"]).parent.iterdir()
                if p.name.startswith(".tmp-")]  # fmt: skip
