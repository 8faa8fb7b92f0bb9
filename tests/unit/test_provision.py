"""`radiant provision` without a bucket: answers validated field by field (nothing written on a
bad one), the settings file read at start, the admin created, a second run refused; signed
documents and the desired-state verdicts."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from appliance import tls
from appliance.audit.models import Actor
from appliance.auth import service as auth
from appliance.config import Mode, Settings, load_settings
from appliance.db.connection import open_database
from provisioning import desired, device, signing
from provisioning.fleet import enroll_bundle
from provisioning.service import is_provisioned
from radiant.cli import main

PASSWORD = "a long first passphrase"


def answers(tmp_path: Path, **changes: Any) -> Path:
    values: dict[str, Any] = {
        "site_name": "Clinique du Lac",
        "timezone": "Africa/Abidjan",
        "language": "fr",
        "admin_username": "chief",
        "dicom_ae_title": "LAC_CT",
        "dicom_port": 11113,
        "inference_endpoint": "https://ai.example.org/v1",
    } | changes
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({k: v for k, v in values.items() if v is not None}))
    return path


def run(
    data: Path, *args: str, password: str = PASSWORD, monkeypatch: pytest.MonkeyPatch
) -> int:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["provision", "--data-dir", str(data), "--admin-password-stdin", *args])


def test_provision_writes_settings_admin_and_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert run(data, "--answers", str(answers(tmp_path)), monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    settings = load_settings(data_dir=data)
    assert is_provisioned(settings)
    assert settings.site_name == "Clinique du Lac" and settings.timezone == "Africa/Abidjan"
    assert settings.language == "fr" and settings.dicom_ae_title == "LAC_CT"
    # Reports follow the screen language when the answers do not name a report language.
    assert settings.report_language == "fr"
    assert settings.dicom_port == 11113
    assert settings.ai_online_endpoint == "https://ai.example.org/v1"
    assert settings.mode is Mode.OFFLINE  # no remote: offline
    for name in ("provisioned.env", "provisioned.json", "device_key.pem"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    ident = device.identity(settings)
    assert ident.device_id in out and ident.public_key in out
    # First boot made the box's TLS certificate and printed its fingerprint.
    cert = data / "tls" / "box.crt"
    assert stat.S_IMODE((data / "tls" / "box.key").stat().st_mode) == 0o600
    assert f"TLS certificate sha256 fingerprint: {tls.fingerprint_sha256(cert)}" in out
    db = open_database(settings.db_path)
    try:
        user = auth.authenticate(db, "chief", PASSWORD, client="test")
        assert user.role.value == "admin"
        actions = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    finally:
        db.conn.close()
    assert "device.provision" in actions and "user.create" in actions


def test_environment_wins_over_the_provisioned_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    assert run(data, "--answers", str(answers(tmp_path)), monkeypatch=monkeypatch) == 0
    monkeypatch.setenv("RADIANT_SITE_NAME", "From the environment")
    assert load_settings(data_dir=data).site_name == "From the environment"
    assert load_settings(data_dir=data).dicom_ae_title == "LAC_CT"


def test_second_provision_is_refused_unless_forced_by_an_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert run(data, "--answers", str(answers(tmp_path)), monkeypatch=monkeypatch) == 0
    before = (data / "provisioned.env").read_bytes()
    again = answers(tmp_path, site_name="Another site")
    assert run(data, "--answers", str(again), monkeypatch=monkeypatch) == 1
    assert "already provisioned" in capsys.readouterr().err
    assert (
        run(data, "--answers", str(again), "--force", password="wrong password!",
            monkeypatch=monkeypatch)
        == 2
    )
    assert "admin_password" in capsys.readouterr().err
    assert (data / "provisioned.env").read_bytes() == before
    assert run(data, "--answers", str(again), "--force", monkeypatch=monkeypatch) == 0
    assert load_settings(data_dir=data).site_name == "Another site"


BAD_ANSWERS = [
    ({"dicom_ae_title": "A\\B"}, "dicom_ae_title"),
    ({"dicom_ae_title": "    "}, "dicom_ae_title"),
    ({"dicom_ae_title": "SEVENTEEN_CHARS_X"}, "dicom_ae_title"),
    ({"dicom_port": 70000}, "dicom_port"),
    ({"dicom_port": "eleven"}, "dicom_port"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"inference_endpoint": "ftp://ai.example.org"}, "inference_endpoint"),
    ({"inference_endpoint": "https://user:pw@ai.example.org"}, "inference_endpoint"),
    ({"remote": "s3", "access_key": "k", "secret_key": "s"}, "bucket"),
    ({"remote": "s3", "bucket": "Bad_Bucket", "access_key": "k", "secret_key": "s"}, "bucket"),
    ({"remote": "gcs", "bucket": "b"}, "remote"),
    ({"remote": "azure", "bucket": "box", "azure_account": "acct"}, "azure_key"),
    ({"language": "de"}, "language"),
    ({"site_name": None}, "site_name"),
    ({"admin_username": "x"}, "admin_username"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(("change", "field"), BAD_ANSWERS)
def test_bad_answer_names_the_field_and_writes_nothing(
    change: dict[str, Any],
    field: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    code = run(data, "--answers", str(answers(tmp_path, **change)), monkeypatch=monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"radiant: {field}: "), err
    assert len(err.splitlines()) == 1
    assert not data.exists()


def test_weak_password_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    code = run(data, "--answers", str(answers(tmp_path)), password="short", monkeypatch=monkeypatch)
    assert code == 2
    assert capsys.readouterr().err.startswith("radiant: admin_password: must be at least")
    assert not data.exists()


def test_password_in_answers_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = answers(tmp_path, admin_password=PASSWORD)
    assert run(tmp_path / "data", "--answers", str(path), monkeypatch=monkeypatch) == 2
    assert "admin_password" in capsys.readouterr().err


def _bundle(tmp_path: Path, key: Any, **preset: Any) -> dict[str, Any]:
    remote = Settings(
        data_dir=tmp_path / "x",
        sync_remote="s3",
        sync_bucket="radiant-bucket",
        sync_endpoint="http://127.0.0.1:9",
        sync_access_key="k",
        sync_secret_key="s",
    )
    return enroll_bundle(key, "clinic-a", remote, {"site_name": "Clinic A", **preset})


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "other_key", "tampered", "unsigned"])
def test_bad_bundle_is_refused(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing.generate()
    bundle = _bundle(tmp_path, key)
    if damage == "other_key":  # signed by another key than the one it names
        bundle = signing.sign(bundle, signing.generate())
    elif damage == "tampered":
        bundle["remote"]["endpoint"] = "http://attacker.example:9000"
    elif damage == "unsigned":
        bundle.pop("signature")
    text = json.dumps(bundle)
    if damage == "corrupt":
        text = "\x00garbage" + text
    elif damage == "truncated":
        text = text[: len(text) // 2]
    path = tmp_path / "bundle.json"
    path.write_text(text)
    data = tmp_path / "data"
    code = run(data, "--bundle", str(path), "--admin-username", "chief", monkeypatch=monkeypatch)
    assert code == 2
    assert capsys.readouterr().err.startswith("radiant: bundle: ")
    assert not data.exists()


def test_bundle_from_an_unexpected_fleet_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(_bundle(tmp_path, signing.generate())))
    expected = signing.fingerprint(signing.generate().public_key())
    code = run(
        tmp_path / "data", "--bundle", str(path), "--admin-username", "chief",
        "--fleet-key-fingerprint", expected, monkeypatch=monkeypatch,
    )
    assert code == 2
    assert "not the expected" in capsys.readouterr().err


def test_signatures_cover_the_canonical_document() -> None:
    key = signing.generate()
    doc = signing.sign({"b": 1, "a": "é", "nested": {"z": [1, 2]}}, key)
    signing.verify(doc, key.public_key())
    reordered = json.loads(json.dumps(doc, indent=4, sort_keys=False))
    signing.verify(reordered, key.public_key())  # formatting does not matter
    for bad in ({**doc, "b": 2}, {k: v for k, v in doc.items() if k != "signature"}):
        with pytest.raises(signing.SignatureError):
            signing.verify(bad, key.public_key())
    with pytest.raises(signing.SignatureError):
        signing.verify(doc, signing.generate().public_key())


def test_desired_verdicts() -> None:
    fleet = signing.generate()

    def doc(serial: int, **values: Any) -> dict[str, Any]:
        return signing.sign(desired.build("radiant-box1", serial, values, "now"), fleet)

    def judge(document: dict[str, Any], last: int = 0, sha: str | None = None) -> desired.Verdict:
        return desired.judge(
            document, device_id="radiant-box1", fleet_key=fleet.public_key(),
            last_serial=last, last_sha256=sha,
        )

    first = doc(1, mode="offline", retention_days="30")
    verdict = judge(first)
    assert verdict.action == "apply" and verdict.values == {"mode": "offline", "retention_days": 30}
    assert judge(first, 1, verdict.sha256).action == "same"
    replay = judge(first, 2, "other")
    assert replay.action == "reject" and "replayed" in (replay.reason or "")
    tampered = {**first, "serial": 5}
    assert "bad signature" in (judge(tampered).reason or "")
    other = signing.sign(desired.build("radiant-box2", 3, {}, "now"), fleet)
    assert "not this one" in (judge(other).reason or "")
    foreign = signing.sign(desired.build("radiant-box1", 3, {}, "now"), signing.generate())
    assert judge(foreign).action == "reject"
    unknown = signing.sign({**desired.build("radiant-box1", 3, {}, "now"),
                            "settings": {"rm_rf": True}}, fleet)
    assert "unknown setting" in (judge(unknown).reason or "")
    with pytest.raises(desired.DesiredError, match="retention_days"):
        desired.parse_assignments(["retention_days=-1"])
    with pytest.raises(desired.DesiredError, match="mode"):
        desired.parse_assignments(["mode=sideways"])


def test_device_show_prints_id_and_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["device", "show", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    ident = device.identity(Settings(data_dir=data))
    assert ident.device_id in out and ident.public_key in out
    assert stat.S_IMODE((data / "device_key.pem").stat().st_mode) == 0o600
    assert (data / "device_id").read_text().strip() == ident.device_id  # sync's id file
    assert "TLS certificate sha256 fingerprint: none yet" in out


def test_audit_actor_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    assert run(data, "--answers", str(answers(tmp_path)), monkeypatch=monkeypatch) == 0
    db = open_database(data / "radiant.db")
    try:
        row = db.execute(
            "SELECT actor, detail FROM audit_log WHERE action = 'device.provision'"
        ).fetchone()
    finally:
        db.conn.close()
    assert row[0].startswith("cli:")
    assert "secret_key" not in row[1] and "LAC_CT" not in row[1]
    assert Actor.system("x").role == "system"


def test_report_language_is_a_provisioning_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    path = answers(tmp_path, report_language="EN")
    assert run(data, "--answers", str(path), monkeypatch=monkeypatch) == 0
    settings = load_settings(data_dir=data)
    assert settings.language == "fr" and settings.report_language == "en"


def test_an_unknown_report_language_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    path = answers(tmp_path, report_language="de")
    assert run(data, "--answers", str(path), monkeypatch=monkeypatch) == 2
    assert capsys.readouterr().err.startswith("radiant: report_language: ")
    assert not data.exists()
