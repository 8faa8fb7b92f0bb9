"""The disk image's recipe (image/builder) agrees with itself and with the units: partition
labels, the read-only root, the packages the appliance needs, the manifest's hashes. Building and
booting the image is `just image` / `just image-test` (minutes, root, QEMU), not this."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "image" / "builder"


def _fstab() -> list[list[str]]:
    text = (BUILDER / "rootfs" / "etc" / "fstab").read_text(encoding="utf-8")
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_root_is_read_only_and_the_labels_match_the_build() -> None:
    rows = {row[1]: row for row in _fstab()}
    assert "ro" in rows["/"][3].split(",") and rows["/"][0] == "LABEL=RADIANT-ROOT"
    assert rows["/opt/radiant"][0] == "LABEL=RADIANT-APP"
    assert rows["/tmp"][2] == "tmpfs" and rows["/var/tmp"][2] == "tmpfs"
    cmdline = (BUILDER / "cmdline.txt").read_text().split()
    assert "root=LABEL=RADIANT-ROOT" in cmdline and "ro" in cmdline
    script = (BUILDER / "build-image.sh").read_text()
    for label in ("RADIANT-ROOT", "RADIANT-APP", "RADIANT-DATA"):
        assert f"-L {label}" in script
    mount = (ROOT / "image" / "systemd" / "var-lib-radiant.mount").read_text()
    assert "What=/dev/disk/by-label/RADIANT-DATA" in mount


def test_the_image_has_what_the_appliance_needs_at_run_time() -> None:
    packages = {
        line.strip()
        for line in (BUILDER / "packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    apt = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["radiant"]["apt"]
    assert set(apt["run"]) <= packages
    assert {"linux-image-amd64", "systemd-sysv", "python3", "python3-venv"} <= packages
    assert "dcmtk" not in packages  # not used at run time


def test_the_build_script_parses(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", "-n", str(BUILDER / "build-image.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_manifest_lists_every_output_with_its_sha256(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    contents = {
        "radiant-0.1.0-x86_64.raw": b"\0" * 4096,
        "vmlinuz": b"kernel",
        "initrd.img": b"initrd",
        "python-packages.txt": b"radiantai==0.1.0\nnumpy==2.1.0\n",
        "debian-packages.txt": b"systemd 252.39-1~deb12u2\npython3 3.11.2-1+b1\n",
    }
    for name, data in contents.items():
        (out / name).write_bytes(data)
    subprocess.run(
        [
            sys.executable,
            str(BUILDER / "manifest.py"),
            "--out",
            str(out),
            "--version",
            "0.1.0",
            "--suite",
            "bookworm",
            "--cmdline",
            "root=LABEL=RADIANT-ROOT ro",
            "--seconds",
            "5",
        ],
        check=True,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["python_packages"]["radiantai"] == "0.1.0"
    assert manifest["debian"]["systemd"] == "252.39-1~deb12u2"
    for name, data in contents.items():
        assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    sums = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr


def test_the_data_partition_size_is_a_checked_build_parameter() -> None:
    script = BUILDER / "build-image.sh"
    for bad, why in (("100", "below 6144 MiB"), ("6143", "below"), ("8G", "whole numbers")):
        env = {"PATH": "/usr/bin:/bin", "RADIANT_IMAGE_DATA_MIB": bad}
        result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        assert result.returncode == 2 and why in result.stderr, (bad, result.stderr)
    just = (ROOT / "Justfile").read_text()
    assert 'image DATA_MIB=env("RADIANT_IMAGE_DATA_MIB", "8192")' in just


def test_the_data_partition_grows_to_the_disk_at_boot() -> None:
    unit = (BUILDER / "rootfs/etc/systemd/system/radiant-grow-data.service").read_text()
    grow = BUILDER / "rootfs/usr/local/sbin/radiant-grow-data"
    assert "ExecStart=/usr/local/sbin/radiant-grow-data" in unit
    assert "RequiresMountsFor=/var/lib/radiant /tmp" in unit
    assert "Before=local-fs.target radiant-firstboot.service radiant.service" in unit
    assert grow.stat().st_mode & 0o111  # executable in the image
    text = grow.read_text()
    assert "growpart" in text and "resize2fs" in text and "RADIANT-DATA" in text
    assert subprocess.run(["sh", "-n", str(grow)]).returncode == 0
    script = (BUILDER / "build-image.sh").read_text()
    assert "radiant-grow-data.service" in script  # enabled
    packages = (BUILDER / "packages.txt").read_text().split()
    assert {"cloud-guest-utils", "fdisk", "e2fsprogs"} <= set(packages)
    # The data partition must stay the disk's last: growpart only extends into free space.
    assert script.index("name=RADIANT-DATA") > script.index("name=RADIANT-APP")


def test_medspacy_is_installed_without_its_pins_everywhere_alike() -> None:
    from provisioning.update.release import NO_DEPS

    bootstrap = (ROOT / "just").read_text()
    assert all(f'"{requirement}"' in bootstrap for requirement in NO_DEPS)
    assert (
        "from provisioning.update.release import NO_DEPS"
        in (BUILDER / "build-image.sh").read_text()
    )
