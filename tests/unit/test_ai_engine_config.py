"""AI engine settings and the engine layer's pure parts: validation, selection, part mapping,
Retry-After parsing, limit recognition. No network, no model."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from ai.engines import EngineRequest, ImagePart, TextPart, build_engine, engine_parts
from ai.engines.none_engine import NoneEngine
from ai.engines.openai_engine import OpenAIEngine, limit_kind, parse_retry_after
from ai.engines.select import OnlineEngine
from ai.engines.transformers_engine import TransformersEngine
from ai.prompts import build_comparison, build_primary
from appliance.config import ConfigError, load_settings
from tests.ai_server import LLAMA_CPP_CONTEXT_ERROR, OPENAI_CONTEXT_ERROR, VLLM_IMAGE_LIMIT_ERROR

JPEG = b"\xff\xd8\xff\xe0fake-but-marked"
ROOT = Path(__file__).resolve().parents[2]


def test_defaults_engine_none_and_checkpoint_under_the_data_dir() -> None:
    settings = load_settings(data_dir="/srv/radiant")
    assert settings.ai_engine == "none"
    assert settings.ai_model_path == Path("/srv/radiant/models/medgemma-1.5-4b-it")
    assert settings.ai_online_fallback is True
    assert settings.ai_endpoint is None
    engine = build_engine(settings)
    assert isinstance(engine, NoneEngine)
    assert engine.describe() == {"engine": "none", "configured": False}


def test_environment_configures_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_AI_ENGINE", " OpenAI ")
    monkeypatch.setenv("RADIANT_AI_ENDPOINT", "http://127.0.0.1:8080/v1")
    monkeypatch.setenv("RADIANT_AI_API_KEY", "local-secret")
    monkeypatch.setenv("RADIANT_AI_ONLINE_ENDPOINT", "")  # blank means unset
    monkeypatch.setenv("RADIANT_AI_MAX_ATTEMPTS", "6")
    settings = load_settings()
    assert settings.ai_engine == "openai"
    assert settings.ai_online_endpoint is None
    assert settings.ai_max_attempts == 6
    assert "local-secret" not in repr(settings)
    engine = build_engine(settings)
    assert isinstance(engine, OpenAIEngine)
    assert engine.url == "http://127.0.0.1:8080/v1/chat/completions"
    assert engine.policy.max_attempts == 6
    assert "local-secret" not in repr(engine.describe())
    engine.close()


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"RADIANT_AI_ENGINE": "openai"}, "RADIANT_AI_ENDPOINT", "must be set"),
        ({"RADIANT_AI_ENGINE": "gpu"}, "RADIANT_AI_ENGINE", "transformers"),
        ({"RADIANT_AI_ENDPOINT": "127.0.0.1:8080"}, "RADIANT_AI_ENDPOINT", "http"),
        (
            {"RADIANT_AI_ONLINE_ENDPOINT": "https://user:pw@example.org/v1"},
            "RADIANT_AI_ONLINE_ENDPOINT",
            "credentials",
        ),
        (
            {"RADIANT_AI_API_KEY": "k", "RADIANT_AI_API_KEY_FILE": "/run/key"},
            "RADIANT_AI_API_KEY_FILE",
            "not both",
        ),
        ({"RADIANT_AI_MAX_ATTEMPTS": "0"}, "RADIANT_AI_MAX_ATTEMPTS", "1"),
    ],
)
def test_invalid_settings_stop_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str, words: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"configuration error: {variable}: ")
    assert words in message
    assert "\n" not in message


def test_modes_choose_the_route(tmp_path: Path) -> None:
    base = load_settings(data_dir=tmp_path, ai_engine="transformers")
    local = build_engine(base)
    assert isinstance(local, TransformersEngine)
    assert not local.loaded  # selection loads nothing
    assert local.model_dir == tmp_path / "models" / "medgemma-1.5-4b-it"

    online_no_endpoint = build_engine(base.model_copy(update={"mode": "online"}))
    assert isinstance(online_no_endpoint, TransformersEngine)

    online = build_engine(
        base.model_copy(update={"mode": "online", "ai_online_endpoint": "https://x.example/v1"})
    )
    assert isinstance(online, OnlineEngine)
    assert isinstance(online.fallback, TransformersEngine)
    assert online.describe()["online_route"] == "online"
    online.close()

    no_fallback = build_engine(
        base.model_copy(
            update={
                "mode": "online",
                "ai_online_endpoint": "https://x.example/v1",
                "ai_online_fallback": False,
            }
        )
    )
    assert isinstance(no_fallback, OnlineEngine)
    assert no_fallback.fallback is None
    no_fallback.close()


def test_vertex_url_gets_predict() -> None:
    settings = load_settings(
        ai_engine="openai",
        ai_endpoint="https://1.us-central1-2.prediction.vertexai.goog/v1/projects/p/locations/"
        "us-central1/endpoints/3",
        ai_vertex=True,
    )
    engine = build_engine(settings)
    assert isinstance(engine, OpenAIEngine)
    assert engine.url.endswith("/endpoints/3:predict")
    engine.close()


def test_importing_the_engines_does_not_import_torch() -> None:
    code = "import sys, ai.engines; sys.exit(1 if 'torch' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
    assert result.returncode == 0


def test_engine_parts_replace_placeholders_in_order() -> None:
    images = [JPEG + bytes([n]) for n in range(3)]
    prompt = build_primary(modality="CT", image_count=3)
    parts = engine_parts(prompt, images)
    assert isinstance(parts[0], TextPart)
    assert [p.jpeg for p in parts if isinstance(p, ImagePart)] == images
    assert [p.text for p in parts[2:7:2] if isinstance(p, TextPart)] == [
        "SLICE 1",
        "SLICE 2",
        "SLICE 3",
    ]
    with pytest.raises(ValueError, match="wants current image 3 but 2 were given"):
        engine_parts(prompt, images[:2])
    with pytest.raises(ValueError, match="4 current images were given but the prompt places 3"):
        engine_parts(prompt, [*images, JPEG])


def test_engine_parts_for_a_comparison() -> None:
    prior = [JPEG + b"prior"]
    current = [JPEG + b"current-1", JPEG + b"current-2"]
    prompt = build_comparison(modality="DX", prior_image_count=1, current_image_count=2)
    parts = engine_parts(prompt, current, prior_images=prior)
    assert [p.jpeg for p in parts if isinstance(p, ImagePart)] == prior + current


def test_requests_are_validated() -> None:
    with pytest.raises(ValidationError, match="not JPEG data"):
        ImagePart(jpeg=b"\x89PNG\r\n")
    with pytest.raises(ValidationError, match="at least one part"):
        EngineRequest(parts=())
    with pytest.raises(ValidationError):
        EngineRequest(parts=(TextPart(text="x"),), max_new_tokens=0)


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after(None) is None


def test_limit_messages_of_the_usual_servers() -> None:
    assert limit_kind(LLAMA_CPP_CONTEXT_ERROR["error"]["message"]) == "context"
    assert limit_kind(OPENAI_CONTEXT_ERROR["error"]["message"]) == "context"
    assert limit_kind(str(VLLM_IMAGE_LIMIT_ERROR["message"])) == "image"
    assert (
        limit_kind(
            "The decoder prompt (length 70000) is longer than the maximum model length of 32768."
        )
        == "context"
    )
    assert limit_kind("image input is not supported - hint: you may need to provide the mmproj")
    assert limit_kind("Image size exceeds the limit of 20 MB") == "image"
    assert limit_kind("'max_tokens' must be positive") is None
    assert limit_kind("Loading model") is None


def test_the_runtime_mode_switch_moves_the_engine(tmp_path: Path) -> None:
    """`radiant mode online` (or the screen, or the fleet) changes the engine of the next
    analysis without a restart; RADIANT_MODE alone is only the starting point."""
    from appliance.analysis.service import current_engine, engine_info
    from appliance.audit.models import Actor
    from appliance.config import Mode
    from appliance.context import prepare
    from sync.mode import set_mode

    settings = load_settings(
        data_dir=tmp_path,
        ai_engine="transformers",
        ai_online_endpoint="https://x.example/v1",
    )
    ctx = prepare(settings)
    db = ctx.pool.get()
    actor = Actor(name="test", role="admin")
    assert isinstance(current_engine(ctx), TransformersEngine)
    assert engine_info(settings, db)["name"] == "transformers"

    set_mode(db, settings, Mode.ONLINE, actor)
    online = current_engine(ctx)
    assert isinstance(online, OnlineEngine)
    online.close()
    assert engine_info(settings, db)["online_route"] == "online"
    assert settings.mode is Mode.OFFLINE  # the process settings are not rewritten

    set_mode(db, settings, Mode.OFFLINE, actor)
    assert isinstance(current_engine(ctx), TransformersEngine)
