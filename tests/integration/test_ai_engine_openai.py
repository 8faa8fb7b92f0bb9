"""The OpenAI-compatible engine against a real local HTTP server that records every request.

Covers what a llama.cpp / vLLM / Vertex AI server sees for a real CT series (the GE head CT, 28
slices: instruction first, each JPEG followed by ``SLICE n``, question last), retries (503,
429 + Retry-After, timeouts, refused connections), no retry on other 4xx, limit errors, the
bearer token file, the Vertex wrapping, the online/offline routing with fallback, the ``none``
engine, and the canned MedGemma answers going through parsing and the safety layer.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ai.engines import (
    Engine,
    EngineError,
    EngineLimitError,
    EngineRequest,
    EngineUnavailable,
    EngineUnreachable,
    build_engine,
    engine_parts,
)
from ai.engines.openai_engine import EndpointConfig, OpenAIEngine, RetryPolicy
from ai.parsing import parse_answer
from ai.prompts import build_focused, build_primary
from ai.safety import DISCLAIMER, apply_safety
from appliance.config import Settings
from tests.ai_server import (
    BAD_REQUEST_ERROR,
    BOX_ANSWER,
    FINDINGS_ANSWER,
    LLAMA_CPP_CONTEXT_ERROR,
    MODEL,
    OPENAI_CONTEXT_ERROR,
    VLLM_IMAGE_LIMIT_ERROR,
    AIServer,
    Scripted,
    chat_completion,
    ct_slice_jpegs,
    cxr_jpeg,
    vertex_prediction,
)
from tests.servers import free_port

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=4, base_wait_s=0.01, max_wait_s=5.0, timeout_s=10.0)


@pytest.fixture(scope="module")
def head_ct() -> list[bytes]:
    images = ct_slice_jpegs()
    assert len(images) == 28
    return images


@pytest.fixture
def server() -> Iterator[AIServer]:
    with AIServer() as running:
        yield running


@pytest.fixture
def second_server() -> Iterator[AIServer]:
    with AIServer(default=Scripted(body=chat_completion(BOX_ANSWER, model="local-gguf"))) as s:
        yield s


class Sleeps(list[float]):
    """Records the back-off waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def ct_request(images: list[bytes], system: str | None = None) -> EngineRequest:
    prompt = build_primary(
        modality="CT", image_count=len(images), body_part="head", clinical_indication="headache"
    )
    return EngineRequest(system=system, parts=engine_parts(prompt, images), max_new_tokens=1500)


_OPENED: list[Engine] = []


@pytest.fixture(autouse=True)
def _close_engines() -> Iterator[None]:
    """Every engine a test made is closed (its HTTP connections too)."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def engine(
    url: str, sleeps: Sleeps | None = None, policy: RetryPolicy = FAST, **config: Any
) -> OpenAIEngine:
    made = OpenAIEngine(
        EndpointConfig(url=url, model=config.pop("model", MODEL), **config),
        policy,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )
    _OPENED.append(made)
    return made


def routed(config: Settings) -> Engine:
    made = build_engine(config)
    _OPENED.append(made)
    return made


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", ai_retry_base_s=0, **values)


def test_ct_series_goes_in_one_user_turn_in_prompt_order(
    server: AIServer, head_ct: list[bytes]
) -> None:
    request = ct_request(head_ct, system="You are an expert radiologist.")
    response = engine(server.url).generate(request)

    assert len(server.requests) == 1
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert "authorization" not in sent.headers
    body = sent.body
    assert body["model"] == MODEL
    assert body["temperature"] == 0
    assert body["max_tokens"] == 1500
    assert body["stream"] is False
    system, user = body["messages"]
    assert system == {"role": "system", "content": "You are an expert radiologist."}
    assert user["role"] == "user"
    content = user["content"]
    # Instruction, then (image, label) x 28; the last label and the question share one text
    # part ("SLICE 28\n\nBased on..."): a template that trims parts cannot glue them.
    assert len(content) == 1 + 2 * 28
    assert content[0]["type"] == "text"
    assert content[0]["text"].startswith("You are assisting a radiologist")
    for n, jpeg in enumerate(head_ct, start=1):
        image, label = content[2 * n - 1], content[2 * n]
        assert image["type"] == "image_url"
        url = image["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == jpeg
        assert label["type"] == "text"
        if n < 28:
            assert label["text"] == f"SLICE {n}"
    last = content[-1]["text"]
    assert last.startswith("SLICE 28\n\nBased on the visual evidence")
    assert last.endswith('"overall_impression": "<hedged overall impression>"}')

    assert response.text == FINDINGS_ANSWER
    assert response.engine == "openai"
    assert response.route == "local"
    assert response.fallback_reason is None
    assert response.model_id == MODEL
    assert response.model_revision == "b6500-test"
    assert (response.tokens_in, response.tokens_out) == (7300, 180)
    assert response.finish_reason == "stop"
    assert response.latency_ms > 0


def test_retries_503_then_succeeds_with_exponential_back_off(
    server: AIServer, head_ct: list[bytes]
) -> None:
    unavailable = Scripted(status=503, body={"error": {"message": "Loading model"}})
    server.script(unavailable, unavailable)
    sleeps = Sleeps()
    response = engine(server.url, sleeps).generate(ct_request(head_ct[:2]))
    assert response.text == FINDINGS_ANSWER
    assert len(server.requests) == 3
    assert sleeps == [0.01, 0.02]
    assert server.requests[0].body == server.requests[2].body


def test_honours_retry_after_on_429(server: AIServer, head_ct: list[bytes]) -> None:
    server.script(Scripted(status=429, body={"error": "busy"}, headers={"Retry-After": "3"}))
    sleeps = Sleeps()
    engine(server.url, sleeps).generate(ct_request(head_ct[:1]))
    assert len(server.requests) == 2
    assert sleeps == [3.0]


def test_retry_after_longer_than_the_maximum_gives_up_at_once(
    server: AIServer, head_ct: list[bytes]
) -> None:
    server.script(Scripted(status=429, body={"error": "quota"}, headers={"Retry-After": "600"}))
    sleeps = Sleeps()
    with pytest.raises(EngineUnreachable, match="retry after 600 s"):
        engine(server.url, sleeps).generate(ct_request(head_ct[:1]))
    assert len(server.requests) == 1
    assert sleeps == []


def test_5xx_exhausts_bounded_attempts(server: AIServer, head_ct: list[bytes]) -> None:
    server.script(*[Scripted(status=502, body="bad gateway")] * 4)
    sleeps = Sleeps()
    with pytest.raises(EngineUnreachable, match=r"HTTP 502 after 4 attempt\(s\)"):
        engine(server.url, sleeps).generate(ct_request(head_ct[:1]))
    assert len(server.requests) == 4
    assert sleeps == [0.01, 0.02, 0.04]


def test_no_retry_on_other_4xx(server: AIServer, head_ct: list[bytes]) -> None:
    server.script(Scripted(status=400, body=BAD_REQUEST_ERROR))
    sleeps = Sleeps()
    with pytest.raises(EngineError, match=r"HTTP 400.*max_tokens") as raised:
        engine(server.url, sleeps).generate(ct_request(head_ct[:1]))
    assert type(raised.value) is EngineError
    assert len(server.requests) == 1
    assert sleeps == []


def test_rejected_credentials_name_the_setting(server: AIServer, head_ct: list[bytes]) -> None:
    server.script(Scripted(status=401, body={"error": {"message": "invalid api key"}}))
    with pytest.raises(EngineError, match="RADIANT_AI_API_KEY"):
        engine(server.url).generate(ct_request(head_ct[:1]))
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, LLAMA_CPP_CONTEXT_ERROR, "context"),
        (400, OPENAI_CONTEXT_ERROR, "context"),
        (400, VLLM_IMAGE_LIMIT_ERROR, "images"),
        (413, "request entity too large", "images"),
        (
            500,
            {
                "error": {
                    "message": "input is too large to process. increase the physical batch size",
                    "type": "server_error",
                }
            },
            "context",
        ),
    ],
    ids=["llama.cpp-context", "openai-context", "vllm-images", "413", "llama.cpp-batch"],
)
def test_limit_answers_raise_engine_limit_error_without_retry(
    server: AIServer, head_ct: list[bytes], status: int, body: Any, kind: str
) -> None:
    server.script(Scripted(status=status, body=body))
    sleeps = Sleeps()
    with pytest.raises(EngineLimitError, match=kind) as raised:
        engine(server.url, sleeps).generate(ct_request(head_ct))
    assert "28 images" in str(raised.value)
    assert len(server.requests) == 1
    assert sleeps == []


def test_timeout_is_retried(server: AIServer, head_ct: list[bytes]) -> None:
    server.script(Scripted(delay_s=2.0))
    policy = RetryPolicy(max_attempts=3, base_wait_s=0.0, timeout_s=0.3, connect_timeout_s=1.0)
    response = engine(server.url, policy=policy).generate(ct_request(head_ct[:1]))
    assert response.text == FINDINGS_ANSWER
    assert len(server.requests) == 2


def test_refused_connection_is_unreachable_after_retries(head_ct: list[bytes]) -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineUnreachable, match=r"could not be reached after 4 attempt\(s\)"):
        engine(url, sleeps).generate(ct_request(head_ct[:1]))
    assert len(sleeps) == 3


def test_bearer_token_is_read_from_the_key_file_each_time(
    server: AIServer, head_ct: list[bytes], tmp_path: Path
) -> None:
    key_file = tmp_path / "api_key"
    key_file.write_text("first-token\n", encoding="utf-8")
    client = engine(server.url, api_key_file=key_file)
    client.generate(ct_request(head_ct[:1]))
    key_file.write_text("rotated-token", encoding="utf-8")
    client.generate(ct_request(head_ct[:1]))
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer first-token",
        "Bearer rotated-token",
    ]


def test_missing_key_file_is_an_actionable_error(server: AIServer, tmp_path: Path) -> None:
    client = engine(server.url, api_key_file=tmp_path / "absent")
    request = EngineRequest(
        parts=engine_parts(build_focused(modality="DX", target="heart"), [cxr_jpeg()])
    )
    with pytest.raises(EngineUnavailable, match="RADIANT_AI_API_KEY_FILE"):
        client.generate(request)
    assert server.requests == []


@pytest.mark.parametrize("as_list", [False, True], ids=["object", "list"])
def test_vertex_wraps_the_body_and_reads_predictions(head_ct: list[bytes], as_list: bool) -> None:
    completion = chat_completion(FINDINGS_ANSWER, model="")
    prediction = vertex_prediction(completion)
    if as_list:
        prediction["predictions"] = [completion]
    with AIServer(default=Scripted(body=prediction)) as vertex:
        client = engine(vertex.predict_url, vertex=True, api_key=SecretStr("ya29.token"))
        response = client.generate(ct_request(head_ct[:3]))

    sent = vertex.requests[0]
    assert sent.path.endswith("/endpoints/42:predict")
    assert sent.headers["authorization"] == "Bearer ya29.token"
    assert list(sent.body) == ["instances"]
    (instance,) = sent.body["instances"]
    assert instance["@requestFormat"] == "chatCompletions"
    assert instance["temperature"] == 0
    assert instance["max_tokens"] == 1500
    assert "stream" not in instance
    content = instance["messages"][0]["content"]
    assert [item["type"] for item in content] == ["text"] + ["image_url", "text"] * 3
    assert content[-1]["text"].startswith("SLICE 3\n\nBased on the visual evidence")
    assert response.text == FINDINGS_ANSWER
    assert response.model_id == MODEL  # the empty model name falls back to the configured one


def test_reasoning_split_by_the_server_is_put_back(server: AIServer) -> None:
    answer = chat_completion('```json\n{"findings": []}\n```')
    answer["choices"][0]["message"]["reasoning_content"] = "thought\nNothing abnormal."
    server.script(Scripted(body=answer))
    request = EngineRequest(
        parts=engine_parts(build_focused(modality="DX", target="heart"), [cxr_jpeg()])
    )
    text = engine(server.url).generate(request).text
    assert text.startswith("<unused94>thought\nNothing abnormal.<unused95>")
    parsed = parse_answer(text)
    assert parsed.thinking_stripped
    assert parsed.findings == ()


def test_online_mode_uses_the_online_endpoint(
    tmp_path: Path, server: AIServer, second_server: AIServer, head_ct: list[bytes]
) -> None:
    config = settings(
        tmp_path,
        mode="online",
        ai_engine="openai",
        ai_endpoint=second_server.url,
        ai_model="local-gguf",
        ai_online_endpoint=server.url,
        ai_online_api_key="cloud-key",
    )
    response = routed(config).generate(ct_request(head_ct[:2]))
    assert len(server.requests) == 1
    assert second_server.requests == []
    assert server.requests[0].headers["authorization"] == "Bearer cloud-key"
    assert (response.engine, response.route, response.fallback_reason) == ("openai", "online", None)

    offline = routed(config.model_copy(update={"mode": "offline"}))
    response = offline.generate(ct_request(head_ct[:2]))
    assert len(second_server.requests) == 1
    assert second_server.requests[0].body["model"] == "local-gguf"
    assert response.route == "local"


def test_online_endpoint_down_falls_back_to_the_local_engine(
    tmp_path: Path, second_server: AIServer, head_ct: list[bytes]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    config = settings(
        tmp_path,
        mode="online",
        ai_engine="openai",
        ai_endpoint=second_server.url,
        ai_online_endpoint=down,
        ai_max_attempts=2,
    )
    response = routed(config).generate(ct_request(head_ct[:2]))
    assert len(second_server.requests) == 1
    assert response.route == "local"
    assert response.model_id == "local-gguf"
    assert response.text == BOX_ANSWER
    assert response.fallback_reason is not None
    assert "online AI endpoint" in response.fallback_reason
    assert "could not be reached after 2 attempt(s)" in response.fallback_reason


def test_online_5xx_falls_back_but_online_4xx_does_not(
    tmp_path: Path, server: AIServer, second_server: AIServer, head_ct: list[bytes]
) -> None:
    config = settings(
        tmp_path,
        mode="online",
        ai_engine="openai",
        ai_endpoint=second_server.url,
        ai_online_endpoint=server.url,
        ai_max_attempts=2,
    )
    online = routed(config)
    server.script(Scripted(status=503, body="down"), Scripted(status=503, body="down"))
    response = online.generate(ct_request(head_ct[:1]))
    assert response.route == "local"
    assert "HTTP 503 after 2 attempt(s)" in (response.fallback_reason or "")

    server.script(Scripted(status=403, body={"error": {"message": "permission denied"}}))
    with pytest.raises(EngineError, match="RADIANT_AI_ONLINE_API_KEY"):
        online.generate(ct_request(head_ct[:1]))
    assert len(second_server.requests) == 1


def test_fallback_can_be_switched_off(tmp_path: Path, head_ct: list[bytes]) -> None:
    with AIServer() as local:
        config = settings(
            tmp_path,
            mode="online",
            ai_engine="openai",
            ai_endpoint=local.url,
            ai_online_endpoint=f"http://127.0.0.1:{free_port()}/v1",
            ai_online_fallback=False,
            ai_max_attempts=1,
        )
        with pytest.raises(EngineUnreachable):
            routed(config).generate(ct_request(head_ct[:1]))
        assert local.requests == []


def test_engine_none_refuses_with_what_to_configure(tmp_path: Path, head_ct: list[bytes]) -> None:
    config = settings(tmp_path)
    with pytest.raises(EngineUnavailable) as raised:
        routed(config).generate(ct_request(head_ct[:1]))
    message = str(raised.value)
    assert message.startswith("No AI engine is configured: set RADIANT_AI_ENGINE=openai with ")
    assert "RADIANT_AI_ENDPOINT=" in message
    assert str(tmp_path / "data" / "models" / "medgemma-1.5-4b-it") in message
    assert "RADIANT_AI_ENGINE=transformers" in message


def test_online_without_a_local_engine_says_so(tmp_path: Path, head_ct: list[bytes]) -> None:
    config = settings(
        tmp_path,
        mode="online",
        ai_online_endpoint=f"http://127.0.0.1:{free_port()}/v1",
        ai_max_attempts=1,
    )
    with pytest.raises(EngineUnreachable, match="no local engine to fall back to"):
        routed(config).generate(ct_request(head_ct[:1]))


def test_scripted_medgemma_answers_leave_only_through_the_safety_layer(
    server: AIServer, head_ct: list[bytes]
) -> None:
    server.script(Scripted(body=chat_completion(FINDINGS_ANSWER)))
    server.script(Scripted(body=chat_completion(BOX_ANSWER)))
    client = engine(server.url)

    findings_text = client.generate(ct_request(head_ct)).text
    safe = apply_safety(parse_answer(findings_text, expect="findings", slice_count=28))
    assert safe.thinking_stripped
    assert safe.verification_flag == "UNVERIFIED"
    assert safe.disclaimer == DISCLAIMER
    (finding,) = safe.findings
    assert "definitely" not in finding.description.lower()
    assert finding.description.startswith("This may be a malignant mass")
    assert finding.audit_original.description.startswith("This is definitely a malignant mass")
    assert finding.impression == "This may be a glioblastoma."
    assert finding.slice == 12
    assert "<unused9" not in safe.audit_model_answer
    assert "thought" not in safe.render_text()

    prompt = build_focused(modality="DX", target="right upper lobe opacity")
    box_text = client.generate(
        EngineRequest(parts=engine_parts(prompt, [cxr_jpeg()]), max_new_tokens=256)
    ).text
    boxes = apply_safety(parse_answer(box_text, expect="boxes")).boxes
    assert [(b.y0, b.x0, b.y1, b.x1) for b in boxes] == [(180.0, 120.0, 420.0, 470.0)]
    assert boxes[0].audit_original_label == "right upper lobe pneumonia"
