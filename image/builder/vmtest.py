"""Boot the built appliance image under QEMU and check it from the host (``just image-test``).

1. First boot: the box's certificate is read once on its console (``<data dir>/tls/box.crt``,
   made by ``radiant tls ensure`` before the appliance starts) and pinned: every request from
   here on is HTTPS to the forwarded port, verified against that certificate (a new one after
   a reboot would fail the test), never unverified. Time from QEMU's start to a healthy
   ``/healthz``; the screen redirects to the first-boot page, which answers. The data partition
   was grown to the end of the (enlarged) disk.
2. ``radiant provision`` on the box's console (through the QEMU guest agent, which runs only
   where a hypervisor attaches its port), then a restart; the hedging classifier (medspaCy's
   ConText) loads in the app slot and tells an asserted disorder from a negated one.
3. storescu sends a study to the forwarded DICOM port; the API lists every instance and serves
   each file back (parsed with pydicom).
4. The watchdog: the appliance killed (SIGKILL) comes back (``Restart=always``); every process
   of radiant.service frozen (SIGSTOP), radiant-watchdog.timer's probe of ``/healthz`` restarts
   it by itself (its shipped settings: 3 failed probes a minute apart, after 5 min of grace).
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
import ssl
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
PYTHON = f"runuser -u radiant -- env {DATA} /opt/radiant/venv/bin/python"
BOX_CERT = "/var/lib/radiant/data/tls/box.crt"
# The hedging classifier in the app slot: medspaCy's ConText must tell these apart.
HEDGING_CHECK = """
import json
from importlib.metadata import version
from ai.hedging import classify, hedge_text
asserted = classify("The mass is a meningioma.")
negated = classify("There is no evidence of pneumonia.")
uncertain = classify("The opacity may represent pneumonia.")
print(json.dumps({"medspacy": version("medspacy"), "spacy": version("spacy"),
                  "asserted": list(asserted.asserted), "negated_names": list(negated.disorders),
                  "negated_asserted": list(negated.asserted),
                  "uncertain_asserted": list(uncertain.asserted),
                  "hedged": hedge_text("The mass is a meningioma.").text}))
"""


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


class Client:
    """HTTPS to the forwarded screen/API port, trusting exactly the box's certificate.

    The certificate is the trust anchor (partial chain) and the host name is checked: the box's
    own certificate names 127.0.0.1 (appliance/tls.py), which is where the port is forwarded."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.context: ssl.SSLContext | None = None
        self.fingerprint = ""

    def pin(self, pem: str) -> None:
        context = ssl.create_default_context(cadata=pem)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        self.context = context
        self.fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def open(
        self, path: str, token: str | None = None, data: bytes | None = None, timeout: float = 120
    ) -> Any:
        if self.context is None:
            raise RuntimeError("no certificate pinned yet")
        request = urllib.request.Request(self.url(path), data=data)  # noqa: S310 (https)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        return urllib.request.urlopen(request, timeout=timeout, context=self.context)  # noqa: S310

    def get_json(self, path: str, token: str | None = None, timeout: float = 120) -> Any:
        with self.open(path, token, timeout=timeout) as response:
            return json.loads(response.read())

    def get_bytes(self, path: str, token: str) -> bytes:
        with self.open(path, token, timeout=60) as response:
            return bytes(response.read())

    def check_served_certificate(self) -> None:
        """The certificate the port serves is the pinned one itself (not one it signed)."""
        assert self.context is not None
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw,
            self.context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            der = conn.getpeercert(binary_form=True) or b""
        served = hashlib.sha256(der).hexdigest()
        assert served == self.fingerprint, f"served {served}, pinned {self.fingerprint}"

    def no_redirect(self, path: str) -> urllib.error.HTTPError | None:
        """The HTTP error (a redirect) ``path`` answers, None on a 2xx."""
        opener = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPSHandler(context=self.context)
        )
        try:
            opener.open(self.url(path), timeout=60).close()
        except urllib.error.HTTPError as exc:
            return exc
        return None


def login(client: Client) -> str:
    form = urllib.parse.urlencode({"username": "admin", "password": PASSWORD}).encode()
    # Argon2 (memory-hard) under software emulation: minutes, not milliseconds.
    with client.open("/api/auth/token", data=form, timeout=600) as response:
        return str(json.loads(response.read())["access_token"])


def stored_instances(client: Client, token: str) -> dict[str, str]:
    """{SOP Instance UID: instance id} of every instance the API lists."""
    found: dict[str, str] = {}
    page = client.get_json("/api/studies?limit=500", token)
    for study in page["items"]:
        for series in client.get_json(f"/api/studies/{study['id']}/series", token):
            for item in client.get_json(f"/api/series/{series['id']}/instances", token):
                found[item["sop_instance_uid"]] = item["id"]
    return found


def readable(client: Client, token: str, instance_id: str, uid: str) -> bool:
    import pydicom

    data = client.get_bytes(f"/api/instances/{instance_id}/file", token)
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
        "--grow-mib",
        type=int,
        default=4096,
        help="the VM's disk is this much larger than the image: the data partition must grow",
    )
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
    size = disk.stat().st_size + args.grow_mib * 1024 * 1024
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
            str(size),
        ],
        check=True,
    )
    vm = Machine(out, work, args.memory, args.cpus)
    figures: dict[str, Any] = {"accel": vm.accel()[1], "image": disk.name}
    try:
        started = vm.start()
        vm.agent.wait(args.boot_timeout)
        vm.pin_certificate(args.boot_timeout)
        vm.healthy(args.boot_timeout)
        figures["first_boot_to_healthz_s"] = round(time.monotonic() - started, 1)
        figures["tls_sha256"] = vm.client.fingerprint
        log(
            f"first boot: /healthz healthy over pinned HTTPS after "
            f"{figures['first_boot_to_healthz_s']} s"
        )
        figures["data_partition"] = grown(vm, disk.stat().st_size + args.grow_mib * 1048576)

        # 1. The first-boot screen, over the pinned HTTPS.
        redirect = vm.client.no_redirect("/")
        assert redirect is not None and redirect.code in (302, 303, 307), redirect
        assert "/first-boot" in redirect.headers.get("Location", ""), redirect.headers
        with vm.client.open("/first-boot", timeout=60) as page:
            assert page.status == 200
        log("first-boot screen answers over HTTPS")

        # 2. Provisioning on the console, then a restart (the same certificate is served).
        code, text = vm.agent.sh(
            f"{RADIANT} provision --site-name 'VM Clinic' --admin-username admin "
            "--ae-title RADIANT --timezone UTC --admin-password-stdin",
            stdin=(PASSWORD + "\n").encode(),
        )
        assert code == 0, text
        log("provisioned: " + text.strip().splitlines()[0])
        printed = text.replace(":", "").lower()
        if "fingerprint" in text.lower() and len(vm.client.fingerprint) == 64:
            assert vm.client.fingerprint in printed, "provision printed another certificate"
        vm.agent.sh("systemctl restart radiant.service")
        vm.healthy(300)
        figures["hedging"] = hedging(vm)
        token = login(vm.client)

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


def grown(vm: Machine, disk_bytes: int) -> dict[str, Any]:
    """The data partition reaches the end of the VM's (larger) disk, and so does its ext4."""
    code, text = vm.agent.sh(
        "p=$(readlink -f /dev/disk/by-label/RADIANT-DATA); n=${p##*/}; "
        "d=$(basename $(readlink -f /sys/class/block/$n/..)); "
        "echo $(cat /sys/class/block/$n/start) $(cat /sys/class/block/$n/size) "
        "$(cat /sys/class/block/$d/size) $(df -B1 --output=size /var/lib/radiant | tail -1); "
        "journalctl -b -u radiant-grow-data.service --no-pager -o cat | tail -5"
    )
    assert code == 0, text
    start, size, whole, fs_bytes = (int(v) for v in text.split()[:4])
    row = {
        "disk_mib": whole * 512 // 1048576,
        "partition_mib": size * 512 // 1048576,
        "filesystem_mib": fs_bytes // 1048576,
        "log": text.strip().splitlines()[1:],
    }
    assert whole * 512 == disk_bytes, (whole, disk_bytes)
    # GPT keeps 33 sectors for its backup at the end; partitions are MiB-aligned.
    assert (whole - (start + size)) * 512 < 2 * 1048576, row
    assert fs_bytes > size * 512 * 0.9, row
    log(f"data partition grown to the disk's end: {json.dumps(row)}")
    return row


def hedging(vm: Machine) -> dict[str, Any]:
    """medspaCy's ConText loads in the app slot and the classifier answers as on the host."""
    code, text = vm.agent.sh(f"{PYTHON} -", stdin=HEDGING_CHECK.encode(), timeout=900)
    assert code == 0, text[-2000:]
    result = dict(json.loads(text.strip().splitlines()[-1]))
    assert result["asserted"] and not result["negated_asserted"], result
    assert result["negated_names"] and not result["uncertain_asserted"], result
    assert result["hedged"] != "The mass is a meningioma.", result
    log(f"hedging classifier in the VM: {json.dumps(result)}")
    return result


def check_provisioned(out: Path, work: Path, args: argparse.Namespace) -> int:
    """The checks after provisioning, on the disk a previous run provisioned (and with the
    certificate that run pinned)."""
    vm = Machine(out, work, args.memory, args.cpus)
    vm.boots = len(list(work.glob("console-*.log")))
    vm.client.pin((work / "box.crt").read_text())
    figures: dict[str, Any] = {"accel": vm.accel()[1], "image": out.name, "reused_disk": True}
    try:
        started = vm.start()
        vm.healthy(args.boot_timeout)
        figures["boot_to_healthz_s"] = round(time.monotonic() - started, 1)
        log(f"boot: /healthz healthy over pinned HTTPS after {figures['boot_to_healthz_s']} s")
        vm.agent.wait(120)
        checks(vm, work, args, login(vm.client), figures)
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
    stored = stored_instances(vm.client, token)
    assert set(files.values()) <= set(stored), "an acknowledged instance is missing"
    assert all(readable(vm.client, token, stored[uid], uid) for uid in files.values())
    log(f"storescu: {len(files)} instances acknowledged, listed and read back over HTTPS")

    # 5. Power cuts while storescu sends.
    rounds: list[dict[str, Any]] = []
    figures["power_cuts"] = rounds
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
        vm.healthy(args.boot_timeout)  # the pinned certificate: the same one after the cut
        boot_s = round(time.monotonic() - started, 1)
        vm.agent.wait(120)
        token = login(vm.client)
        stored = stored_instances(vm.client, token)
        present = [uid for uid in acked if uid in stored]
        good = [uid for uid in present if readable(vm.client, token, stored[uid], uid)]
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
    figures["watchdog"] = watchdog(vm)


def watchdog(vm: Machine) -> dict[str, Any]:
    """A crash is Restart=always's; a hang (every process of the unit frozen) is the timer's."""

    def main_pid() -> str:
        return vm.agent.sh("systemctl show -p MainPID --value radiant.service")[1].strip()

    pid = main_pid()
    started = time.monotonic()
    vm.agent.sh(f"kill -KILL {pid}")
    time.sleep(2)
    vm.healthy(300)
    assert main_pid() not in (pid, "0")
    killed_s = round(time.monotonic() - started, 1)
    log(f"appliance killed (SIGKILL): restarted by systemd, healthy again after {killed_s} s")

    # Frozen: nothing but radiant-watchdog.timer (every minute; 3 failed probes in a row after
    # the unit's 5 min start-up grace) may bring it back.
    pid = main_pid()
    started = time.monotonic()
    vm.agent.sh("systemctl kill -s STOP radiant.service")  # granian main + worker
    code, frozen = vm.agent.sh(
        "cg=$(systemctl show -p ControlGroup --value radiant.service); "
        "ps -o stat= -p $(paste -sd, /sys/fs/cgroup$cg/cgroup.procs)"
    )
    assert code == 0 and frozen.split(), frozen
    assert all(state.startswith("T") for state in frozen.split()), frozen  # all stopped
    end = time.monotonic() + 900
    while main_pid() in (pid, "0"):
        assert time.monotonic() < end, "the watchdog did not restart the frozen appliance"
        time.sleep(5)
    vm.healthy(300)
    hung_s = round(time.monotonic() - started, 1)
    code, journal = vm.agent.sh(
        "journalctl -b -u radiant-watchdog.service --no-pager -o cat | grep radiant-watchdog"
    )
    assert "restarting radiant.service" in journal, journal
    log(
        f"appliance frozen (SIGSTOP): radiant-watchdog.timer restarted it; healthy after {hung_s} s"
    )
    return {
        "killed_to_healthz_s": killed_s,
        "frozen_to_healthz_s": hung_s,
        "probe_log": [
            line for line in journal.splitlines() if "failed" in line or "restarting" in line
        ][-4:],
    }


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
