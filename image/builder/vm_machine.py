"""The QEMU side of the image test: one headless VM on a qcow2 overlay with its ports forwarded
to 127.0.0.1, and the QEMU guest agent to run commands on the box's console."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

from vm_client import Client

BOX_CERT = "/var/lib/radiant/data/tls/box.crt"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Agent:
    """QEMU guest agent (QMP-style JSON over the virtio port's host socket)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30
    ) -> Any:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
            reader = sock.makefile("rb")
            token = secrets.randbelow(2**31) + 1
            sock.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": token}}).encode())
            while json.loads(reader.readline()).get("return") != token:
                pass
            body: dict[str, Any] = {"execute": command}
            if arguments:
                body["arguments"] = arguments
            sock.sendall(json.dumps(body).encode())
            answer = json.loads(reader.readline())
        if "error" in answer:
            raise RuntimeError(f"guest agent {command}: {answer['error']}")
        return answer.get("return")

    def wait(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                self.call("guest-ping", timeout=5)
                return
            except (OSError, ValueError, RuntimeError):
                if time.monotonic() > end:
                    raise TimeoutError("the guest agent did not answer") from None
                time.sleep(1)

    def sh(self, command: str, stdin: bytes | None = None, timeout: float = 300) -> tuple[int, str]:
        args: dict[str, Any] = {"path": "/bin/sh", "arg": ["-c", command], "capture-output": True}
        if stdin is not None:
            args["input-data"] = base64.b64encode(stdin).decode()
        pid = self.call("guest-exec", args)["pid"]
        end = time.monotonic() + timeout
        while True:
            status = self.call("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
                err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
                return int(status.get("exitcode", -1)), out + err
            if time.monotonic() > end:
                raise TimeoutError(f"guest command did not finish: {command}")
            time.sleep(0.5)


class Machine:
    """One QEMU process on the overlay disk, headless, ports on 127.0.0.1."""

    def __init__(self, out: Path, work: Path, memory: int, cpus: int) -> None:
        self.out, self.work, self.memory, self.cpus = out, work, memory, cpus
        self.http, self.dicom = free_port(), free_port()
        self.agent = Agent(work / "qga.sock")
        self.client = Client(self.http)
        self.process: subprocess.Popen[bytes] | None = None
        self.boots = 0

    def accel(self) -> list[str]:
        flags = Path("/proc/cpuinfo").read_text().split()
        if os.access("/dev/kvm", os.W_OK) and ("vmx" in flags or "svm" in flags):
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg", "-cpu", "max"]

    def start(self) -> float:
        self.boots += 1
        self.agent.path.unlink(missing_ok=True)
        manifest = json.loads((self.out / "manifest.json").read_text())
        cmdline = str(manifest["kernel_cmdline"])
        command = [
            "qemu-system-x86_64",
            *self.accel(),
            "-m",
            str(self.memory),
            "-smp",
            str(self.cpus),
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{self.work / f'console-{self.boots}.log'}",
            "-kernel",
            str(self.out / "vmlinuz"),
            "-initrd",
            str(self.out / "initrd.img"),
            "-append",
            cmdline,
            "-drive",
            f"file={self.work / 'disk.qcow2'},if=virtio,format=qcow2,cache=writeback",
            "-netdev",
            "user,id=n0,restrict=on,"
            f"hostfwd=tcp:127.0.0.1:{self.http}-:8000,hostfwd=tcp:127.0.0.1:{self.dicom}-:11112",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-chardev",
            f"socket,path={self.agent.path},server=on,wait=off,id=qga0",
            "-device",
            "virtio-serial",
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
        started = time.monotonic()
        self.process = subprocess.Popen(command, start_new_session=True)
        return started

    def power_cut(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def pin_certificate(self, timeout: float) -> None:
        """Read the box's certificate on its console (once, at first boot) and trust only it."""
        end = time.monotonic() + timeout
        while True:
            code, pem = self.agent.sh(f"cat {BOX_CERT}")
            if code == 0 and "BEGIN CERTIFICATE" in pem:
                break
            if time.monotonic() > end:
                raise TimeoutError(f"{BOX_CERT} was not made: {pem.strip()[-300:]}")
            time.sleep(2)
        self.client.pin(pem)
        (self.work / "box.crt").write_text(pem)
        log(f"box certificate pinned from the console: sha256 {self.client.fingerprint}")

    def healthy(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            assert self.process is not None and self.process.poll() is None, "QEMU exited"
            try:
                if self.client.get_json("/healthz", timeout=10).get("status") == "ok":
                    self.client.check_served_certificate()
                    return
            except ssl.SSLCertVerificationError as exc:
                raise AssertionError(f"the box serves another certificate: {exc}") from None
            except (OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > end:
                raise TimeoutError(f"no healthy /healthz ({last})")
            time.sleep(1)
