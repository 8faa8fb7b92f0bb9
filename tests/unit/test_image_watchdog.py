"""The image's watchdog probe (image/libexec/radiant-watchdog.py), run as systemd runs it: a real
process probing a real HTTP server on 127.0.0.1, with a stand-in ``systemctl`` that answers
``is-active``/``show`` and records ``restart``."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from appliance import tls
from appliance.config import Settings
from tests.servers import clean_env, free_port

SCRIPT = Path(__file__).resolve().parents[2] / "image" / "libexec" / "radiant-watchdog.py"


class _Health(BaseHTTPRequestHandler):
    answer: dict[str, Any]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        code, body = self.answer["code"], json.dumps({"status": self.answer["status"]}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def health_server(
    context: ssl.SSLContext | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    answer: dict[str, Any] = {"code": 200, "status": "ok"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Health,), {"answer": answer}))
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def systemctl(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A systemctl stand-in: state file 'active' (yes/no), call log."""
    log, active = tmp_path / "calls.log", tmp_path / "active"
    active.write_text("yes")
    script = tmp_path / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$1" in\n'
        f'  is-active) [ "$(cat {active})" = yes ] ;;\n'
        "  show) echo 1000000 ;;\n"  # active since 1 s after boot: long past any grace
        "  *) exit 0 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return script, log, active


def _probe(
    systemctl: Path,
    state: Path,
    data_dir: Path,
    port: int,
    *extra: str,
    env: dict[str, str] | None = None,
) -> int:
    env = clean_env(RADIANT_DATA_DIR=str(data_dir), RADIANT_HTTP_PORT=str(port), **(env or {}))
    args = [sys.executable, str(SCRIPT), "--systemctl", str(systemctl), "--state", str(state)]
    return subprocess.run(
        [*args, "--timeout", "5", *extra], env=env, cwd=data_dir.parent, check=False, timeout=60
    ).returncode


def test_three_failures_in_a_row_restart_the_unit_and_success_resets(
    tmp_path: Path, systemctl: tuple[Path, Path, Path]
) -> None:
    binary, log, _ = systemctl
    state = tmp_path / "run" / "failures"
    with health_server() as (port, answer):
        assert _probe(binary, state, tmp_path / "data", port) == 0
        answer.update(code=503, status="degraded")
        assert _probe(binary, state, tmp_path / "data", port) == 1
        assert _probe(binary, state, tmp_path / "data", port) == 1
        assert state.read_text().strip() == "2"
        answer.update(code=200, status="ok")  # one good probe clears the count
        assert _probe(binary, state, tmp_path / "data", port) == 0
        assert not state.exists()
        answer.update(code=503, status="degraded")
        for _ in range(3):
            _probe(binary, state, tmp_path / "data", port)
    restarts = [line for line in log.read_text().splitlines() if line.startswith("restart")]
    assert restarts == ["restart radiant.service"]
    assert state.read_text().strip() == "0"


def test_probes_over_https_when_the_appliance_serves_tls(
    tmp_path: Path, systemctl: tuple[Path, Path, Path]
) -> None:
    binary, log, _ = systemctl
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    cert, key = tls.write_box_certificate(settings)
    state = tmp_path / "failures"
    extra_env = {
        "RADIANT_TLS_CERT": str(cert),
        "RADIANT_TLS_KEY": str(key),
        "RADIANT_HTTP_TLS": "on",
    }
    with health_server(tls.server_context(cert, key)) as (port, _):
        assert _probe(binary, state, data_dir, port, env=extra_env) == 0
        # The same port probed as plain HTTP (no TLS configured) fails: the probe really
        # went through TLS above.
        assert _probe(binary, state, data_dir, port) == 1
    assert "restart" not in log.read_text()


def test_a_dead_port_counts_as_a_failure(
    tmp_path: Path, systemctl: tuple[Path, Path, Path]
) -> None:
    binary, log, _ = systemctl
    state = tmp_path / "failures"
    for _ in range(2):
        assert _probe(binary, state, tmp_path / "data", free_port(), "--failures", "2") == 1
    assert "restart radiant.service" in log.read_text()


def test_nothing_happens_while_the_unit_is_stopped_or_starting(
    tmp_path: Path, systemctl: tuple[Path, Path, Path]
) -> None:
    binary, log, active = systemctl
    state = tmp_path / "failures"
    active.write_text("no")
    for _ in range(3):
        assert _probe(binary, state, tmp_path / "data", free_port(), "--failures", "1") == 0
    active.write_text("yes")
    # Active for a few seconds only (since 1 s after boot is 'long ago' only with no grace set
    # beyond the machine's uptime): a grace longer than any uptime skips the probe.
    assert _probe(binary, state, tmp_path / "data", free_port(), "--grace", "1e12") == 0
    assert "restart" not in log.read_text()
    assert not state.exists()


def test_bad_arguments_are_a_usage_error(
    tmp_path: Path, systemctl: tuple[Path, Path, Path]
) -> None:
    binary, _, _ = systemctl
    assert _probe(binary, tmp_path / "f", tmp_path / "data", 1, "--failures", "0") == 2
