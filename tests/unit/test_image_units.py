"""The appliance image's systemd units, sysusers and tmpfiles entries, checked by systemd's own
tools: ``systemd-analyze verify`` on the units (their ExecStart programs must exist, so the
units are copied with ``/opt/radiant`` rewritten to a folder holding stand-ins), and
``systemd-sysusers`` + ``systemd-tmpfiles --create`` into a scratch root."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from radiant.cli import build_parser

IMAGE = Path(__file__).resolve().parents[2] / "image"
UNITS = sorted((IMAGE / "systemd").iterdir())
PREFIX = "/opt/radiant/"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd (apt group test) is not installed"
)


def _unit_lines(name: str, key: str) -> list[str]:
    text = (IMAGE / "systemd" / name).read_text(encoding="utf-8")
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def _staged(tmp_path: Path, extra: dict[str, str] | None = None) -> list[Path]:
    """The units with /opt/radiant/ moved under tmp_path, where executables stand in."""
    root = tmp_path / "opt" / "radiant"
    for relative in ("venv/bin/radiant", "venv/bin/python"):
        stub = root / relative
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    (root / "libexec").mkdir(parents=True, exist_ok=True)
    shutil.copy(IMAGE / "libexec" / "radiant-watchdog.py", root / "libexec")
    units = tmp_path / "units"
    units.mkdir()
    staged = []
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8").replace(PREFIX, f"{root}/")
        target = units / unit.name
        target.write_text(text + (extra or {}).get(unit.name, ""), encoding="utf-8")
        staged.append(target)
    return staged


def _verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        cwd=paths[0].parent,
        timeout=120,
    )


def test_the_expected_units_are_there() -> None:
    assert [unit.name for unit in UNITS] == [
        "radiant-firstboot.service",
        "radiant-update.service",
        "radiant-update.timer",
        "radiant-watchdog.service",
        "radiant-watchdog.timer",
        "radiant.service",
        "var-lib-radiant.mount",
    ]


def test_systemd_analyze_verify_passes_without_a_warning(tmp_path: Path) -> None:
    result = _verify(_staged(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_the_check_catches_a_bad_key_and_a_missing_program(tmp_path: Path) -> None:
    """The verification above can fail: an unknown key is reported, a missing binary fails."""
    staged = _staged(tmp_path, {"radiant.service": "MemoryMaxx=1G\n"})
    result = _verify(staged)
    assert "Unknown key" in result.stderr and "MemoryMaxx" in result.stderr
    (tmp_path / "opt" / "radiant" / "venv" / "bin" / "radiant").unlink()
    result = _verify([p for p in staged if p.name == "radiant-firstboot.service"])
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_service_settings_that_matter() -> None:
    assert _unit_lines("radiant.service", "Restart") == ["always"]
    assert "network-online.target" in " ".join(_unit_lines("radiant.service", "After"))
    assert _unit_lines("radiant.service", "Wants") == ["network-online.target"]
    assert _unit_lines("radiant.service", "MemoryMax") and _unit_lines(
        "radiant.service", "MemoryHigh"
    )
    assert _unit_lines("radiant.service", "Environment")[0] == (
        "RADIANT_DATA_DIR=/var/lib/radiant/data"
    )
    assert _unit_lines("radiant-watchdog.timer", "Unit") == ["radiant-watchdog.service"]
    assert _unit_lines("radiant-firstboot.service", "ConditionPathExists") == [
        "!/var/lib/radiant/data/provisioned.json"
    ]


@pytest.mark.parametrize(
    "unit", ["radiant.service", "radiant-firstboot.service", "radiant-update.service"]
)
def test_exec_start_is_a_real_radiant_command(unit: str) -> None:
    (command,) = _unit_lines(unit, "ExecStart")
    argv = shlex.split(command)
    assert argv[0] == "/opt/radiant/venv/bin/radiant"
    args = build_parser().parse_args(argv[1:])
    assert callable(args.func)


def test_watchdog_unit_runs_the_shipped_script() -> None:
    (command,) = _unit_lines("radiant-watchdog.service", "ExecStart")
    argv = shlex.split(command)
    assert argv[:2] == ["/opt/radiant/venv/bin/python", "/opt/radiant/libexec/radiant-watchdog.py"]
    assert (IMAGE / "libexec" / "radiant-watchdog.py").is_file()
    assert argv[argv.index("--state") + 1].startswith("/run/radiant-watchdog/")


@pytest.mark.skipif(os.geteuid() != 0, reason="creating files owned by another user needs root")
def test_sysusers_and_tmpfiles_build_the_data_partition_layout(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool, args in (
        ("systemd-sysusers", [str(IMAGE / "sysusers.d" / "radiant.conf")]),
        ("systemd-tmpfiles", ["--create", str(IMAGE / "tmpfiles.d" / "radiant.conf")]),
    ):
        result = subprocess.run(
            [tool, f"--root={root}", *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    uid = int(passwd["radiant"][2])
    assert passwd["radiant"][5:] == ["/var/lib/radiant", "/usr/sbin/nologin"]
    groups = (root / "etc/group").read_text()
    assert "video:x:" in groups and "render:x:" in groups
    expected = {"": 0o750, "data": 0o700, "tmp": 0o700}
    for name, mode in expected.items():
        info = (root / "var/lib/radiant" / name).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (mode, uid), name
