"""What the AI engine tests need: a recording OpenAI-compatible server and real test images.

:class:`AIServer` listens on 127.0.0.1 (a free port) in a thread, records every request (path,
headers, JSON body) and answers from a script of :class:`Scripted` responses (status, body,
headers such as Retry-After, delay); when the script runs out it repeats ``default``. Use it as a
context manager so it is always stopped.

The canned answers imitate MedGemma 1.5: a thinking trace ``<unused94>thought ... <unused95>``
before a fenced JSON answer, definitive wording the safety layer must hedge, and a localization
answer with ``box_2d`` in 0..1000 of the padded square image.

The image helpers are deliberately minimal (the appliance's own image preparation lives in
``ai/imaging.py``): CT slices sorted by Instance Number, uniformly sampled, converted to HU and
mapped to MedGemma's three windows as RGB, JPEG-encoded.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from appliance.config import Settings

DATA = Path(__file__).resolve().parent / "data"
CT_HEAD = DATA / "ct_ge_head_tilt18_varspacing"
CXR = DATA / "xr_chest_cr_dx" / "NIH_ChestXray_DX_SC.dcm"
MODEL = "google/medgemma-1.5-4b-it"

#: MedGemma CT windows (HU) for R, G, B: wide, soft tissue, brain.
CT_WINDOWS = ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0))

FINDINGS_ANSWER = (
    "<unused94>thought\nThe request is a head CT. Looking at slices 10 to 14 there is a "
    "hyperdense rounded lesion in the right frontal lobe with surrounding oedema. I will answer "
    "in the requested JSON format.<unused95>"
    "```json\n"
    '{"findings": [{"description": "This is definitely a malignant mass in the right frontal '
    'lobe.", "location": "right frontal lobe", "impression": "This is a glioblastoma.", '
    '"confidence": 0.9, "measurements": [{"name": "diameter", "value": 23, "unit": "mm"}], '
    '"slice": 12}], "overall_impression": "Malignant brain tumour."}\n'
    "```"
)
BOX_ANSWER = (
    "<unused94>thought\nThe opacity projects over the right upper zone.<unused95>"
    "```json\n"
    '[{"box_2d": [180, 120, 420, 470], "label": "right upper lobe pneumonia"}]\n'
    "```"
)
LLAMA_CPP_CONTEXT_ERROR = {
    "error": {
        "code": 400,
        "message": (
            "request (7352 tokens) exceeds the available context size (4096 tokens), "
            "try increasing it"
        ),
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 7352,
        "n_ctx": 4096,
    }
}
VLLM_IMAGE_LIMIT_ERROR = {
    "object": "error",
    "message": "At most 1 image(s) may be provided in one prompt. (parameter=image)",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
OPENAI_CONTEXT_ERROR = {
    "error": {
        "message": (
            "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in 9001 tokens. Please reduce the length of the messages."
        ),
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
BAD_REQUEST_ERROR = {
    "error": {"message": "'max_tokens' must be positive", "type": "invalid_request_error"}
}


def chat_completion(
    text: str,
    *,
    model: str = MODEL,
    prompt_tokens: int = 7300,
    completion_tokens: int = 180,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A chat.completion object as llama.cpp / vLLM return it."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "model": model,
        "system_fingerprint": "b6500-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def vertex_prediction(completion: dict[str, Any]) -> dict[str, Any]:
    """A Vertex AI ``:predict`` answer to a ``chatCompletions`` instance."""
    return {
        "predictions": completion,
        "deployedModelId": "1234567890",
        "model": "projects/1/locations/us-central1/models/medgemma",
        "modelDisplayName": "medgemma-1.5-4b-it",
        "modelVersionId": "1",
    }


@dataclass(frozen=True)
class Scripted:
    """One scripted answer: status, JSON (dict/list) or raw body, extra headers, delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes = b""  # the body exactly as received


class AIServer:
    """A scripted, recording OpenAI-compatible HTTP server on 127.0.0.1."""

    def __init__(
        self,
        script: Iterable[Scripted] = (),
        default: Scripted | None = None,
    ) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Scripted] = deque(script)
        self._default = default or Scripted(body=chat_completion(FINDINGS_ANSWER))
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The API base URL (what ``RADIANT_AI_ENDPOINT`` takes)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def predict_url(self) -> str:
        """A Vertex AI style ``:predict`` URL on this server."""
        return (
            f"http://127.0.0.1:{self.port}/v1/projects/p/locations/us-central1/endpoints/42:predict"
        )

    def script(self, *responses: Scripted) -> None:
        with self._lock:
            self._script.extend(responses)

    def _next(self) -> Scripted:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                with server._lock:
                    server.requests.append(
                        Recorded(
                            "POST",
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            raw,
                        )
                    )
                answer = server._next()
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                if isinstance(answer.body, bytes | str):
                    payload = answer.body.encode() if isinstance(answer.body, str) else answer.body
                    content_type = "text/plain"
                else:
                    payload = json.dumps(answer.body).encode()
                    content_type = "application/json"
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        return Handler

    def start(self) -> AIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> AIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def ct_window_rgb(hu: np.ndarray) -> np.ndarray:
    """HU slice -> uint8 RGB with MedGemma's three windows (R wide, G soft tissue, B brain)."""
    channels = []
    for low, high in CT_WINDOWS:
        scaled = (np.clip(hu, low, high) - low) / (high - low) * 255.0
        channels.append(np.round(scaled).astype(np.uint8))
    return np.stack(channels, axis=-1)


def ct_slice_jpegs(folder: Path = CT_HEAD, count: int | None = None) -> list[bytes]:
    """The series' slices (by Instance Number), ``count`` sampled uniformly, as RGB JPEGs."""
    datasets = sorted(
        (pydicom.dcmread(path) for path in folder.glob("*.dcm")),
        key=lambda ds: int(ds.InstanceNumber),
    )
    if count is not None and count < len(datasets):
        picks = np.linspace(0, len(datasets) - 1, count).round().astype(int)
        datasets = [datasets[int(i)] for i in picks]
    images = []
    for ds in datasets:
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        hu = ds.pixel_array.astype(np.float32) * slope + intercept
        images.append(_jpeg(ct_window_rgb(hu)))
    return images


def cxr_jpeg(path: Path = CXR) -> bytes:
    """A radiograph padded to a square (centred), grey replicated to RGB, as JPEG."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype(np.float32)
    low, high = float(pixels.min()), float(pixels.max())
    grey = ((pixels - low) / max(high - low, 1.0) * 255.0).round().astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        grey = 255 - grey
    rows, cols = grey.shape
    side = max(rows, cols)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - rows) // 2, (side - cols) // 2
    square[top : top + rows, left : left + cols] = grey
    return _jpeg(np.stack([square] * 3, axis=-1))


def engine_settings(tmp_path: Path, server: AIServer, **extra: Any) -> Settings:
    """Settings of a box whose AI engine is ``server`` (OpenAI protocol), one attempt per call;
    ``extra`` adds or overrides settings."""
    return Settings(
        data_dir=tmp_path / "data",
        ai_engine="openai",
        ai_endpoint=server.url,
        ai_max_attempts=1,
        ai_timeout_s=60,
        **extra,
    )
