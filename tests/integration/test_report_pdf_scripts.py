"""Report PDFs print names in scripts DejaVu Sans lacks (Japanese, Korean, Chinese) through the
per-character font fallback, checked by poppler's ``pdftotext`` and ``pdffonts``; and the run
splitter on its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlite_utils
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.context import AppContext
from appliance.export import pdf as pdf_export
from appliance.export.fontruns import split_runs
from tests.integration.test_report_exports import Headers
from tests.reporting import ingest_ct, insert_analysis

FRENCH = (
    "Hyperdensité focale frontale droite évoquant une hémorragie ; œdème péri-lésionnel "
    "à contrôler, déjà vu en août."
)
NAMES = {
    "japanese": ("太郎 たろう", "山田 やまだ"),
    "korean": ("길동", "홍"),
    "chinese": ("小东", "王"),
}


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("script", list(NAMES))
def test_pdf_prints_cjk_names_and_french_findings(
    script: str,
    app: FastAPI,
    client: TestClient,
    as_role: Headers,
    db: sqlite_utils.Database,
    tmp_path: Path,
) -> None:
    first, last = NAMES[script]
    ctx: AppContext = app.state.ctx
    ct = ingest_ct(ctx)
    rad = as_role("radiologist")
    renamed = client.patch(
        f"/api/patients/{ct.patient_id}", json={"first_name": first, "last_name": last}, headers=rad
    )
    assert renamed.status_code == 200, renamed.text
    analysis = insert_analysis(db, ct)
    db.execute(
        "UPDATE findings SET description = ? WHERE analysis_id = ? AND location = ?",
        (FRENCH, analysis, "right frontal lobe"),
    )
    db.conn.commit()
    created = client.post(
        "/api/reports", json={"study_id": ct.study_id, "analysis_id": analysis}, headers=rad
    )
    assert created.status_code == 201, created.text
    response = client.get(
        f"/api/export/report/{created.json()['id']}/pdf", headers=as_role("viewer")
    )
    assert response.status_code == 200, response.text
    path = tmp_path / f"{script}.pdf"
    path.write_bytes(response.content)

    text = _run("pdftotext", str(path), "-")
    flat = " ".join(text.split())
    assert f"{first} {last}" in flat  # the header table and the running patient line
    assert flat.count(f"{first} {last}") >= 2
    assert FRENCH in flat
    assert "\ufffd" not in text

    fonts = _run("pdffonts", str(path)).splitlines()
    embedded = {line.split()[0].split("+")[-1] for line in fonts[2:] if " yes " in line}
    assert "DejaVuSans" in embedded, fonts
    # ReportLab names its subsets of a multi-byte font <name>-<n>.
    assert any(name.startswith("WenQuanYiMicroHei") for name in embedded), fonts
    assert not any("Helvetica" in line for line in fonts)


def test_split_runs_by_coverage() -> None:
    latin = ("main", frozenset(map(ord, "Zoë Ñ^-.,() \n")))
    cjk = ("cjk", frozenset(map(ord, "山田太郎やまだたろう홍길동王小东 ^")))
    fonts = [latin, cjk]

    assert split_runs("", fonts).runs == []
    assert split_runs("Zoë", fonts).runs == [("main", "Zoë")]
    assert split_runs(
        "Yamada^Tarou=山田^太郎", [("main", frozenset(map(ord, "YamdTrou^="))), cjk]
    ).runs == [
        ("main", "Yamada^Tarou="),
        ("cjk", "山田"),
        ("main", "^"),  # the main font comes first when both have it
        ("cjk", "太郎"),
    ]
    # A space between CJK words stays in the CJK run; newlines never cut a run.
    assert split_runs("山田 太郎\nやまだ", fonts).runs == [("cjk", "山田 太郎\nやまだ")]
    assert split_runs("Zoë (홍길동), 王小东", fonts).runs == [
        ("main", "Zoë ("),
        ("cjk", "홍길동"),
        ("main", "), "),
        ("cjk", "王小东"),
    ]
    # A combining accent stays with its base letter's font when that font has it.
    with_mark = ("main", frozenset(map(ord, "e\u0301")))
    assert split_runs("e\u0301山", [with_mark, cjk]).runs == [("main", "e\u0301"), ("cjk", "山")]

    # Nothing has the emoji: it stays in the run it is in and is reported.
    result = split_runs("Zoë 😀 山😀", fonts)
    assert result.runs == [("main", "Zoë 😀 "), ("cjk", "山😀")]
    assert result.missing == {0x1F600}
    assert split_runs("😀", fonts).runs == [("main", "😀")]
    with pytest.raises(ValueError):
        split_runs("x", [])


def test_markup_escapes_each_run_and_names_the_fallback_font() -> None:
    font = pdf_export.fonts()
    assert font.embedded and font.fallbacks, "DejaVu Sans and a CJK font are installed"
    markup = pdf_export.markup("<b>&山田\nZoë", font)
    cjk = font.fallbacks[0]
    assert markup == f'&lt;b&gt;&amp;<font name="{cjk}">山田<br/></font>Zoë'
