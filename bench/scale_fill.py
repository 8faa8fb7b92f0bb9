"""Filling a data dir with many synthetic instances for ``bench/scale.py`` (not a test).

Headers: real test files (tests/data) re-UIDed: every study, series and instance gets a new
``2.25`` UID, every patient a new MRN and a name drawn from fixed lists, every study a date in
the last ten years. Index rows: written by the ingest service's own indexing step
(:meth:`appliance.dicom.ingest.Ingestor._index`, the same rows and audit entries a C-STORE
makes), many instances per transaction. Files: pixel data is shared: each template file is
stored once and every instance made from it points to that object (so the data dir holds the
index of N instances but not N files; ``radiant fsck`` would report the sharing). Analyses
and reports: one completed analysis per study (2 % critical, 8 % urgent) and a report, final
for all but the newest tenth of the studies (rows only, no text).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import sqlite_utils

from appliance.audit.models import Actor
from appliance.auth import service as auth_service
from appliance.auth.models import Role, UserCreate
from appliance.config import Settings
from appliance.context import prepare
from appliance.db.connection import transaction
from appliance.dicom.reading import InstanceInfo, read_instance
from appliance.dicom.scan import scan_instance

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_SETS = (
    "mr_siemens_t1_sag_brain_35sl",
    "ct_ge_head_tilt18_varspacing",
    "xr_chest_cr_dx",
)
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "Andre", "Mercier", "Dupont", "Lambert", "Bonnet",
    "Francois", "Martinez", "Legrand", "Garnier", "Faure", "Rousseau", "Blanc", "Guerin",
    "Muller", "Henry", "Roussel", "Nicolas", "Perrin", "Morin", "Mathieu", "Clement", "Gauthier",
    "Dumont", "Lopez", "Fontaine", "Chevalier", "Robin", "Masson", "Smith", "Johnson", "Brown",
)  # fmt: skip
FIRST_NAMES = (
    "Marie", "Jean", "Pierre", "Anne", "Louis", "Claire", "Paul", "Sophie", "Luc", "Julie",
    "Marc", "Emma", "Hugo", "Lea", "Noah", "Chloe", "Adam", "Ines", "Jules", "Lina",
)  # fmt: skip
USER = "bench"
PASSWORD = "bench-scale-password-1"  # noqa: S105 (a throwaway data dir)
ACTOR = Actor.system("bench-scale")


def patient_id(patient: int) -> str:
    """The MRN of the fill's ``patient``-th patient."""
    return f"BENCH{patient:06d}"


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def templates() -> list[tuple[str, InstanceInfo, bytes]]:
    """(name, header info, bytes) of each template: the first files of the template sets."""
    found = []
    for name in TEMPLATE_SETS:
        files = sorted(p for p in (ROOT / "tests/data" / name).rglob("*") if p.is_file())
        for path in files:
            data = path.read_bytes()
            if data[128:132] != b"DICM":
                continue
            info = scan_instance(data) or read_instance(data)[1]
            found.append((name, info, data))
            break
    return found


def prepare_box(settings: Settings) -> None:
    """Migrate the data dir and create the bench user (a radiologist)."""
    ctx = prepare(settings)
    auth_service.create_user(
        ctx.pool.get(),
        UserCreate(username=USER, password=PASSWORD, role=Role.RADIOLOGIST),
        ACTOR,
    )
    ctx.pool.close_all()


def fill(
    settings: Settings,
    instances: int,
    studies: int,
    *,
    per_commit: int = 2000,
    seed: int = 20,
) -> None:
    """Index ``instances`` instances in ``studies`` studies (2 series each, patients with two
    studies each) into the prepared data dir ``settings.data_dir``."""
    ctx = prepare(settings)
    db = ctx.pool.get()
    rng = random.Random(seed)  # noqa: S311 (synthetic dates)
    shared = []
    for index, (name, info, data) in enumerate(templates()):
        key = f"dicom/bench-shared/{index}-{name}.dcm"
        ctx.store.put(key, data)
        shared.append((info, key, len(data), hashlib.sha256(data).hexdigest()))
    per_study = max(1, instances // studies)
    today = date.today()
    done = 0
    pending = 0
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        for study in range(studies):
            count = per_study if study < studies - 1 else instances - done
            if count <= 0:
                break
            info, key, size, sha = shared[study % len(shared)]
            patient = study // 2
            header = replace(
                info,
                study_uid=uid(),
                patient_id=patient_id(patient),
                patient_family=LAST_NAMES[patient % len(LAST_NAMES)].upper(),
                patient_given=FIRST_NAMES[(patient // len(LAST_NAMES)) % len(FIRST_NAMES)],
                birth_date=f"{1930 + patient % 80}-0{1 + patient % 9}-1{patient % 9}",
                study_date=(today - timedelta(days=rng.randrange(3650))).strftime("%Y%m%d"),
                accession_number=f"A{study:08d}",
                study_description=f"Bench study {study}",
            )
            series = [uid(), uid()]
            for number in range(count):
                one = replace(
                    header,
                    series_uid=series[number % 2],
                    series_number=1 + number % 2,
                    sop_instance_uid=uid(),
                    instance_number=1 + number // 2,
                )
                ctx.ingestor._index(db, one, key, size, sha, "bench", "BENCH", ACTOR, None)
                done += 1
                pending += 1
                if pending >= per_commit:
                    db.conn.execute("COMMIT")
                    db.conn.execute("BEGIN IMMEDIATE")
                    pending = 0
        db.conn.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    with transaction(db):
        # the receiver would have marked them stable long ago
        db.execute("UPDATE series SET status = 'stable', stable_at = updated_at")
        db.execute("UPDATE studies SET status = 'stable', stable_at = updated_at")
        _analyse_and_sign(db, rng)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ctx.pool.close_all()


def _analyse_and_sign(db: sqlite_utils.Database, rng: random.Random) -> None:
    """What years of use leave beside the images: every study analysed once (the box
    analyses each stable study), 2 % found critical and 8 % urgent (the worklist's urgency
    ranks), and every study but the newest tenth signed (a final report), so that the
    worklist's ranks, status chips and unreported filters read a realistic table."""
    studies = db.execute("SELECT id, created_at FROM studies ORDER BY created_at").fetchall()
    signed_until = len(studies) - len(studies) // 10
    for n, (study_id, created_at) in enumerate(studies):
        draw = rng.random()
        urgency = "critical" if draw < 0.02 else "urgent" if draw < 0.10 else "routine"
        analysis_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO analyses (id, study_id, analysis_type, status, urgency, created_at,"
            " completed_at) VALUES (?, ?, 'primary', 'completed', ?, ?, ?)",
            (analysis_id, study_id, urgency, created_at, created_at),
        )
        db.execute(
            "INSERT INTO reports (id, study_id, analysis_id, status, signed_at, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                str(uuid.uuid4()),
                study_id,
                analysis_id,
                "final" if n < signed_until else "draft",
                created_at if n < signed_until else None,
                created_at,
                created_at,
            ),
        )
