"""Starting and stopping real server processes for tests: free ports on 127.0.0.1, waiting
until they answer, and always stopping them."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

RADIANT = [sys.executable, "-m", "radiant"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any RADIANT_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIANT_")}
    env.update(extra)
    return env


def wait_http(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float = 60.0,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll ``url`` until it answers; fail early with the server's output if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise AssertionError(f"server exited with {process.returncode}:\n{out[-4000:]}")
        try:
            httpx.get(url, timeout=2.0, verify=verify)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    output: str = ""  # stdout and stderr together, filled in once the process has stopped


@contextmanager
def running(
    args: list[str],
    env: Mapping[str, str],
    cwd: Path,
    ready_url: str,
    verify: ssl.SSLContext | bool = True,
) -> Iterator[Served]:
    """Run ``args`` in its own process group until the block ends (SIGTERM, then SIGKILL)."""
    process = subprocess.Popen(
        args,
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    served = Served(process)
    try:
        wait_http(ready_url, process, verify=verify)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout:
            served.output = process.stdout.read().decode(errors="replace")
            process.stdout.close()
