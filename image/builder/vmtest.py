"""Boot the built appliance image under QEMU and check it from the host (``just image-test``).

1. First boot: time from QEMU's start to a healthy ``/healthz`` on the forwarded port; the
   screen redirects to the first-boot page, which answers (and refuses to provision from the
   network: only the box's own screen or console may).
2. ``radiant provision`` on the box's console (through the QEMU guest agent, which runs only
   where a hypervisor attaches its port), then a restart.
3. storescu sends a study to the forwarded DICOM port; the API lists every instance and serves
   each file back (parsed with pydicom).
4. The watchdog: the appliance killed (SIGKILL) comes back (``Restart=always``); frozen
   (SIGSTOP), the shipped probe restarts it.
5. Power cuts: while storescu sends, QEMU is killed (SIGKILL: the guest's page cache and
   anything not yet written are lost), the same disk is booted again, and every instance that
   storescu saw acknowledged must be listed and readable, and ``radiant fsck`` clean.

Ports are forwarded to 127.0.0.1 only. The built image is never written: the VM runs on a qcow2
overlay. Software emulation (TCG) unless the CPU has hardware virtualization (vmx/svm).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "vm test passphrase 42"  # noqa: S105 (a throwaway VM's administrator)
DATA = "RADIANT_DATA_DIR=/var/lib/radiant/data RADIANT_HTTP_HOST=0.0.0.0"
RADIANT = f"runuser -u radiant -- env {DATA} /opt/radiant/venv/bin/radiant"


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

    def healthy(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            assert self.process is not None and self.process.poll() is None, "QEMU exited"
            try:
                if get_json(f"http://127.0.0.1:{self.http}/healthz").get("status") == "ok":
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > end:
                raise TimeoutError("no healthy /healthz")
            time.sleep(1)


def get_json(url: str, token: str | None = None, timeout: float = 120) -> Any:
    request = urllib.request.Request(url)  # noqa: S310 (127.0.0.1)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (127.0.0.1)
        return json.loads(response.read())


def get_bytes(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (127.0.0.1)
        return bytes(response.read())


def login(port: int) -> str:
    form = urllib.parse.urlencode({"username": "admin", "password": PASSWORD}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/auth/token", data=form)
    # Argon2 (memory-hard) under software emulation: minutes, not milliseconds.
    with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 (127.0.0.1)
        return str(json.loads(response.read())["access_token"])


def stored_instances(port: int, token: str) -> dict[str, str]:
    """{SOP Instance UID: instance id} of every instance the API lists."""
    base = f"http://127.0.0.1:{port}"
    found: dict[str, str] = {}
    page = get_json(f"{base}/api/studies?limit=500", token)
    for study in page["items"]:
        for series in get_json(f"{base}/api/studies/{study['id']}/series", token):
            for item in get_json(f"{base}/api/series/{series['id']}/instances", token):
                found[item["sop_instance_uid"]] = item["id"]
    return found


def readable(port: int, token: str, instance_id: str, uid: str) -> bool:
    import pydicom

    data = get_bytes(f"http://127.0.0.1:{port}/api/instances/{instance_id}/file", token)
    return str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID) == uid


def study_copy(source: Path, dest: Path, tag: str) -> dict[Path, str]:
    """The source series with fresh Study/Series/SOP Instance UIDs: {file: SOP UID}."""
    import pydicom
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    files: dict[Path, str] = {}
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        uid = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.AccessionNumber = tag[:16]
        target = dest / path.name
        ds.save_as(target)
        files[target] = uid
    return files


class Sender:
    """storescu over the forwarded port; counts the acknowledged files as they come."""

    def __init__(self, port: int, files: dict[Path, str]) -> None:
        self.files = files
        self.acked: list[str] = []
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [
                "storescu",
                "-v",
                "-aet",
                "VMTEST",
                "-aec",
                "RADIANT",
                "127.0.0.1",
                str(port),
                *map(str, files),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        current: Path | None = None
        for line in self.process.stdout:
            self.output.append(line)
            if "Sending file:" in line:
                current = Path(line.split("Sending file:", 1)[1].strip())
            elif "Received Store Response" in line and "(Success)" in line and current:
                self.acked.append(self.files[current])
                current = None

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return code


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".cache/image/out")
    parser.add_argument("--rounds", type=int, default=5, help="power cuts")
    parser.add_argument("--memory", type=int, default=2048, help="MiB")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--boot-timeout", type=float, default=600)
    parser.add_argument(
        "--provisioned",
        action="store_true",
        help="reuse the last run's disk (already provisioned): skip first boot and provisioning",
    )
    parser.add_argument(
        "--study", type=Path, default=REPO / "tests/data/mr_siemens_t1_sag_brain_35sl"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    disk = next(out.glob("radiant-*.raw"), None)
    if disk is None:
        print("image-test: no image in", out, "(run `just image` first)", file=sys.stderr)
        return 2
    work = out.parent / "vm"
    if args.provisioned:
        return check_provisioned(out, work, args)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(disk),
            str(work / "disk.qcow2"),
        ],
        check=True,
    )
    vm = Machine(out, work, args.memory, args.cpus)
    figures: dict[str, Any] = {"accel": vm.accel()[1], "image": disk.name}
    try:
        started = vm.start()
        vm.healthy(args.boot_timeout)
        figures["first_boot_to_healthz_s"] = round(time.monotonic() - started, 1)
        log(f"first boot: /healthz healthy after {figures['first_boot_to_healthz_s']} s")
        base = f"http://127.0.0.1:{vm.http}"

        # 1. The first-boot screen.
        no_redirect = urllib.request.build_opener(NoRedirect)
        try:
            no_redirect.open(f"{base}/", timeout=60)
            raise AssertionError("/ did not redirect an unprovisioned box")
        except urllib.error.HTTPError as exc:
            assert exc.code in (302, 303, 307), exc.code
            assert "/first-boot" in exc.headers.get("Location", ""), exc.headers
        with urllib.request.urlopen(f"{base}/first-boot", timeout=60) as page:  # noqa: S310
            assert page.status == 200
        log("first-boot screen answers (provisioning from the network is refused)")

        # 2. Provisioning on the console, then a restart.
        vm.agent.wait(120)
        code, text = vm.agent.sh(
            f"{RADIANT} provision --site-name 'VM Clinic' --admin-username admin "
            "--ae-title RADIANT --timezone UTC --admin-password-stdin",
            stdin=(PASSWORD + "\n").encode(),
        )
        assert code == 0, text
        log("provisioned: " + text.strip().splitlines()[0])
        vm.agent.sh("systemctl restart radiant.service")
        vm.healthy(300)
        token = login(vm.http)

        checks(vm, work, args, token, figures)
        try:
            vm.agent.call("guest-shutdown", {"mode": "powerdown"}, timeout=10)
            assert vm.process is not None
            vm.process.wait(timeout=120)
            vm.process = None
        except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired):
            pass
    finally:
        if vm.process is not None:
            vm.power_cut()
    (work / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    log("figures: " + json.dumps(figures))
    return 0


def check_provisioned(out: Path, work: Path, args: argparse.Namespace) -> int:
    """The checks after provisioning, on the disk a previous run provisioned."""
    vm = Machine(out, work, args.memory, args.cpus)
    vm.boots = len(list(work.glob("console-*.log")))
    figures: dict[str, Any] = {"accel": vm.accel()[1], "image": out.name, "reused_disk": True}
    try:
        started = vm.start()
        vm.healthy(args.boot_timeout)
        figures["boot_to_healthz_s"] = round(time.monotonic() - started, 1)
        log(f"boot: /healthz healthy after {figures['boot_to_healthz_s']} s")
        vm.agent.wait(120)
        checks(vm, work, args, login(vm.http), figures)
    finally:
        if vm.process is not None:
            vm.power_cut()
    (work / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    log("figures: " + json.dumps(figures))
    return 0


def checks(
    vm: Machine, work: Path, args: argparse.Namespace, token: str, figures: dict[str, Any]
) -> None:
    """storescu and the API, power cuts, then the watchdog."""
    # 3. A study by C-STORE, seen through the API.
    files = study_copy(args.study, work / "study-0", "VMTEST0")
    sender = Sender(vm.dicom, files)
    code = sender.finish()
    assert code == 0 and len(sender.acked) == len(files), "".join(sender.output[-40:])
    stored = stored_instances(vm.http, token)
    assert set(files.values()) <= set(stored), "an acknowledged instance is missing"
    assert all(readable(vm.http, token, stored[uid], uid) for uid in files.values())
    log(f"storescu: {len(files)} instances acknowledged, listed and read back by the API")

    # 5. Power cuts while storescu sends.
    rounds = []
    for number in range(1, args.rounds + 1):
        files = study_copy(args.study, work / f"study-{number}", f"CUT{number}")
        cut_after = 1 + (number * 7) % len(files)
        sender = Sender(vm.dicom, files)
        while len(sender.acked) < cut_after and sender.process.poll() is None:
            time.sleep(0.02)
        time.sleep(secrets.randbelow(300) / 1000)
        vm.power_cut()
        sender.finish()
        acked = list(sender.acked)
        started = vm.start()
        vm.healthy(args.boot_timeout)
        boot_s = round(time.monotonic() - started, 1)
        vm.agent.wait(120)
        token = login(vm.http)
        stored = stored_instances(vm.http, token)
        present = [uid for uid in acked if uid in stored]
        good = [uid for uid in present if readable(vm.http, token, stored[uid], uid)]
        fsck_code, fsck_text = vm.agent.sh(f"{RADIANT} fsck", timeout=600)
        row = {
            "round": number,
            "cut_after_acks": cut_after,
            "acknowledged": len(acked),
            "present": len(present),
            "readable": len(good),
            "received_unacknowledged": len([u for u in files.values() if u in stored])
            - len(present),
            "fsck": "clean" if fsck_code == 0 else fsck_text.strip()[-300:],
            "boot_to_healthz_s": boot_s,
        }
        rounds.append(row)
        log(f"power cut {number}: " + json.dumps(row))
        assert len(good) == len(acked) and fsck_code == 0, row
    figures["power_cuts"] = rounds

    # 4. The watchdog: crash, then hang.
    def main_pid() -> str:
        return vm.agent.sh("systemctl show -p MainPID --value radiant.service")[1].strip()

    pid = main_pid()
    vm.agent.sh(f"kill -KILL {pid}")
    time.sleep(2)
    vm.healthy(300)
    assert main_pid() not in (pid, "0")
    log("appliance killed (SIGKILL): restarted by systemd, healthy again")
    pid = main_pid()
    vm.agent.sh("systemctl kill -s STOP radiant.service")  # granian main + worker
    code, text = vm.agent.sh(
        f"env {DATA} /opt/radiant/venv/bin/python /opt/radiant/libexec/radiant-watchdog.py "
        "--unit radiant.service --state /run/radiant-watchdog/failures "
        "--failures 1 --grace 0 --timeout 5"
    )
    assert code == 1 and "restarting radiant.service" in text, text
    vm.healthy(300)
    assert main_pid() not in (pid, "0")
    log("appliance frozen (SIGSTOP): the watchdog probe restarted it")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
