"""Commands that need only the database load none of the web stack: ``radiant fsck``,
``radiant audit verify``, ``radiant migrate`` and ``radiant user create`` run in a fresh
interpreter where importing FastAPI, NiceGUI or Starlette raises ImportError, and load no
router, no web app, no replication manager and no fleet agent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.audit.models import Actor
from appliance.config import Settings
from appliance.context import prepare
from tests.servers import clean_env

MR = Path(__file__).resolve().parents[1] / "data" / "mr_siemens_t1_sag_brain_35sl"
BLOCKED = ("fastapi", "nicegui", "starlette")
ACTOR = Actor.system("test")

# A meta path finder ahead of every other: any import of a blocked package (or of a module
# inside one) fails, as it would on a machine without them.
RUN_BLOCKED = f"""
import sys

BLOCKED = {BLOCKED!r}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked by the test")
        return None


sys.meta_path.insert(0, Blocker())
from radiant.cli import main

code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("loaded:", ",".join(loaded) or "-")
# Nor the routers, the web app and composition root, replication's manager, the fleet agent,
# the screens:
WEB = ("appliance.app", "appliance.bootstrap", "sync.manager", "provisioning.agent", "ui")
wired = sorted(
    m for m in sys.modules
    if m.endswith(".routes") or any(m == w or m.startswith(w + ".") for w in WEB)
)
print("wired:", ",".join(wired) or "-")
raise SystemExit(code)
"""


def radiant_blocked(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_BLOCKED, *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=clean_env(),
        timeout=120,
        check=False,
    )


@pytest.fixture
def data_dir(settings: Settings) -> Path:
    """A data dir with three instances ingested through the real path (and audited)."""
    ctx = prepare(settings)
    try:
        for source in sorted(MR.glob("*.dcm"))[:3]:
            result = ctx.ingestor.ingest(source.read_bytes(), source="test", actor=ACTOR)
            assert result.outcome == "stored"
    finally:
        ctx.pool.close_all()
    return settings.data_dir


def test_the_blocker_blocks() -> None:
    """The check below would prove nothing if the blocker let FastAPI through."""
    script = RUN_BLOCKED.replace("from radiant.cli import main", "import fastapi")
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "fastapi is blocked by the test" in result.stderr


def test_fsck_runs_without_the_web_stack(data_dir: Path) -> None:
    result = radiant_blocked("fsck", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    (summary,) = [line for line in result.stdout.splitlines() if line.startswith("checked ")]
    assert summary.startswith("checked 3 instances, 3 stored files")
    assert summary.endswith(": consistent")
    assert "loaded: -" in result.stdout
    assert "wired: -" in result.stdout


def test_audit_verify_runs_without_the_web_stack(data_dir: Path) -> None:
    result = radiant_blocked("audit", "verify", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("audit chain intact:")
    assert "loaded: -" in result.stdout
    assert "wired: -" in result.stdout


def test_migrate_and_user_create_run_without_the_web_stack(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "fresh")
    migrated = radiant_blocked("migrate", "--data-dir", data_dir)
    assert migrated.returncode == 0, migrated.stderr
    assert "\nschema version " in migrated.stdout
    created = radiant_blocked(
        "user", "create", "--username", "admin", "--role", "admin", "--password-stdin",
        "--data-dir", data_dir, stdin="a long passphrase for the test\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created admin admin (" in created.stdout
    assert "wired: -" in migrated.stdout and "wired: -" in created.stdout


def test_serve_needs_the_web_stack(tmp_path: Path) -> None:
    """The web app itself does need FastAPI: under the blocker ``radiant serve`` fails."""
    result = radiant_blocked("serve", "--data-dir", str(tmp_path / "data"), "--port", "9")
    assert result.returncode != 0
    assert "is blocked by the test" in result.stderr
