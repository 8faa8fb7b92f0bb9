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
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vm_client import PASSWORD, Sender, login, readable, stored_instances, study_copy
from vm_machine import Machine, log

REPO = Path(__file__).resolve().parents[2]
DATA = "RADIANT_DATA_DIR=/var/lib/radiant/data RADIANT_HTTP_HOST=0.0.0.0"
RADIANT = f"runuser -u radiant -- env {DATA} /opt/radiant/venv/bin/radiant"
PYTHON = f"runuser -u radiant -- env {DATA} /opt/radiant/venv/bin/python"
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


if __name__ == "__main__":
    raise SystemExit(main())
