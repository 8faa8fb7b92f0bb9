"""Settings as groups: each subsystem's fields live in one group class, the groups together are
exactly :class:`~appliance.config.Settings` (every ``RADIANT_*`` variable, documented in
``.env.example``), each group's checks still run in the composed object, and the model engines'
group (:class:`ai.settings.AiSettings`) works on its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from ai.engines import build_engine
from ai.settings import AiSettings
from appliance.config import Mode, Settings, load_settings
from appliance.config.clinical import ClinicalSettings
from appliance.config.core import CoreSettings
from appliance.config.dicom import DicomSettings
from appliance.config.fleet import FleetSettings
from appliance.config.replication import ReplicationSettings
from appliance.config.web import WebSettings

GROUPS = (
    CoreSettings,
    WebSettings,
    DicomSettings,
    ClinicalSettings,
    AiSettings,
    ReplicationSettings,
    FleetSettings,
)
ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_the_groups_are_exactly_the_settings() -> None:
    seen: dict[str, str] = {}
    for group in GROUPS:
        for name in group.model_fields:
            assert name not in seen, f"{name} is in {seen.get(name)} and {group.__name__}"
            seen[name] = group.__name__
    assert set(seen) == set(Settings.model_fields)


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"RADIANT_([A-Z0-9_]+)=", ENV_EXAMPLE.read_text("utf-8")))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_every_group_check_runs_in_the_composed_settings() -> None:
    """Checks are methods: one group's check must not hide another's of the same name."""
    composed = Settings.__pydantic_decorators__.field_validators
    for group in GROUPS:
        for name, check in group.__pydantic_decorators__.field_validators.items():
            assert name in composed, f"{group.__name__}.{name}"
            assert composed[name].info.fields == check.info.fields, f"{group.__name__}.{name}"
    bad = {
        "http_host": "two words",  # web
        "dicom_host": " ",  # dicom
        "tls_cert": "/etc/cert.pem",  # web: without tls_key
        "report_font_path": "",  # clinical: blank means unset
        "tls_key": " ",  # web: blank means unset, so the pair is complete (neither)
        "ai_endpoint": "ftp://model",  # ai
        "sync_remote": "ftp",  # replication
        "timezone": "Mars/Olympus",  # fleet
        "log_level": "loud",  # core
    }
    for name, value in bad.items():
        if name in ("report_font_path", "tls_key"):
            assert getattr(Settings(**{name: value}), name) is None
            continue
        with pytest.raises(ValidationError) as caught:
            Settings(**{name: value})
        assert caught.value.errors()[0]["loc"][0] in (name, "tls_key")


def test_the_engines_settings_stand_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_AI_ENGINE", "openai")
    monkeypatch.setenv("RADIANT_AI_ENDPOINT", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RADIANT_AI_ONLINE_ENDPOINT", "http://127.0.0.1:8/v1")
    monkeypatch.setenv("RADIANT_MODE", "online")  # not the engines' business on their own
    alone = AiSettings()
    assert alone.ai_engine == "openai" and not alone.online_active()
    assert build_engine(alone).describe()["engine"] == "openai"  # the local one
    assert alone.ai_model_path == Path("models") / "medgemma-1.5-4b-it"


def test_the_appliance_decides_the_route_and_the_models_folder(tmp_path: Path) -> None:
    offline = load_settings(data_dir=tmp_path, ai_online_endpoint="http://127.0.0.1:8/v1")
    assert not offline.online_active()
    assert offline.ai_model_path == tmp_path / "models" / "medgemma-1.5-4b-it"
    online = offline.model_copy(update={"mode": Mode.ONLINE})
    assert online.online_active()
    assert build_engine(online).describe()["engine"] == "online"
