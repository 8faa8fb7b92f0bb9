"""Signed software updates through a real S3 server (moto): a release published with
`radiant fleet release publish` is downloaded, verified, installed into a new app slot (a real
venv, offline pip), switched to, restarted and health-checked; an unhealthy release and one whose
migration fails are rolled back and reported, and never retried; a tampered file or a foreign
signature is refused before anything is installed.

No virtual machine: the slots live in a temp dir and the "restart" starts the slot's own
``radiant serve`` (the console script of the wheel installed there) as a process. The wheels are
small stand-ins for the app built here (a ``radiantai`` distribution whose ``radiant`` serves
``/healthz`` and whose ``migrate`` writes ``schema_migrations``), so the test needs no network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioning import signing
from provisioning.status_report import update_state
from provisioning.update.bucket import for_box
from provisioning.update.release import NO_DEPS, ReleaseError, build, verify
from provisioning.update.slots import Slots
from provisioning.update.updater import Updater, db_schema
from radiant.cli import main
from tests.sync_servers import Remote, moto_s3, stop_process

pytestmark = pytest.mark.integration

FAKE_APP = """
import importlib.util, json, os, sqlite3, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
VERSION, SCHEMA, MODE = {version!r}, {schema!r}, {mode!r}

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"status": "ok", "version": VERSION,
                           "medspacy": importlib.util.find_spec("medspacy") is not None,
                           "migrate_at_start": os.environ.get("RADIANT_DB_MIGRATE_AT_START")}})
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *args):
        pass

def main():
    command = sys.argv[1]
    if command == "serve":
        if MODE == "unhealthy":
            sys.exit("this release cannot start")
        HTTPServer(("127.0.0.1", int(os.environ["RADIANT_HTTP_PORT"])), Health).serve_forever()
    if command == "migrate":
        if MODE == "bad-migration":
            sys.exit("migration 0003 failed: no such column")
        db = sqlite3.connect(os.path.join(sys.argv[sys.argv.index("--data-dir") + 1], "radiant.db"))
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
        db.executemany("INSERT OR IGNORE INTO schema_migrations VALUES (?)",
                       [(n,) for n in range(1, SCHEMA + 1)])
        db.commit()
"""


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest},{len(data)}"


def _wheel(folder: Path, name: str, version: str, files: dict[str, str], meta: str = "") -> Path:
    """A pure-Python wheel (PEP 427) holding ``files``."""
    info = f"{name}-{version}.dist-info"
    files = dict(files)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{meta}"
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
    files[f"{info}/WHEEL"] += "Tag: py3-none-any\n"
    record = [f"{path},{_record_hash(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def fake_wheel(folder: Path, version: str, schema: int, mode: str = "ok") -> Path:
    """A ``radiantai`` wheel whose ``radiant`` command is the stand-in above, next to stand-ins
    for the wheels of NO_DEPS (medspaCy's), whose metadata requires a spaCy the bundle lacks:
    installed with their dependencies they would fail, as medspaCy's pin does."""
    for requirement in NO_DEPS:
        name, pinned = requirement.split("==")
        module = name.lower()
        _wheel(
            folder,
            name.replace("-", "_"),
            pinned,
            {f"{module}/__init__.py": ""},
            "Requires-Dist: spacy<3.8\n",
        )
    files = {
        "radiantfake/__init__.py": FAKE_APP.format(version=version, schema=schema, mode=mode),
        f"radiantai-{version}.dist-info/entry_points.txt": "[console_scripts]\n"
        "radiant = radiantfake:main\n",
    }
    for number in range(1, schema + 1):
        files[f"appliance/db/migrations/{number:04d}_step.sql"] = "SELECT 1;\n"
    return _wheel(folder, "radiantai", version, files)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlotProcess:
    """Restarts ``<apps>/current/venv/bin/radiant serve`` as a child process."""

    def __init__(self, apps: Path, port: int) -> None:
        self.apps, self.port = apps, port
        self.process: subprocess.Popen[bytes] | None = None
        self.starts: list[dict[str, str]] = []

    def restart(self, env: dict[str, str]) -> None:
        self.stop()
        self.starts.append(dict(env))
        self.process = subprocess.Popen(
            [str(self.apps / "current" / "venv" / "bin" / "radiant"), "serve"],
            env=os.environ | env | {"RADIANT_HTTP_PORT": str(self.port)},
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def health(port: int) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    with moto_s3(tmp_path / "server") as server:
        yield server


def publish(capsys: pytest.CaptureFixture[str], bundle: Path, key: Path) -> tuple[int, str]:
    code = main(["fleet", "release", "publish", str(bundle), "--key", str(key)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_release_applied_rolled_back_and_refused(
    remote: Remote,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in remote.env().items():
        monkeypatch.setenv(name, value)
    key_path = tmp_path / "it" / "fleet_key.pem"
    key_path.parent.mkdir()
    assert main(["fleet", "keygen", "--out", str(key_path)]) == 0
    key = signing.load_private_key(key_path)

    def release(version: str, schema: int, mode: str = "ok") -> Path:
        wheels = tmp_path / "wheels" / version
        fake_wheel(wheels, version, schema, mode)
        bundle = tmp_path / "bundles" / version
        command = ["fleet", "release", "build", "--wheels", str(wheels), "--version", version]
        assert main([*command, "--out", str(bundle), "--key", str(key_path)]) == 0
        return bundle

    # The box: the factory slot 1.0.0 (schema 1), running, its database at schema 1.
    data, apps = tmp_path / "box" / "data", tmp_path / "box" / "apps"
    data.mkdir(parents=True)
    slots = Slots(apps, python=sys.executable)
    factory = release("1.0.0", 1)
    slots.install(verify(factory, key.public_key()), factory)
    slots.switch("1.0.0")
    port = free_port()
    runner = SlotProcess(apps, port)
    settings = remote.settings(data)
    updater = Updater(
        settings,
        slots,
        for_box(settings),
        runner,
        key.public_key(),
        f"http://127.0.0.1:{port}/healthz",
        deadline_s=10,
    )
    try:
        runner.restart({})
        subprocess.run(
            [str(slots.venv_bin("1.0.0", "radiant")), "migrate", "--data-dir", str(data)],
            check=True,
        )
        assert updater.run_round()["last"]["outcome"] == "up_to_date"  # no channel yet

        # A good release: applied, migrated only after its health check, reported.
        code, out = publish(capsys, release("1.1.0", 2), key_path)
        assert code == 0, out
        state = updater.run_round()
        assert state["last"] == state["last"] | {"outcome": "applied", "version": "1.1.0"}
        assert slots.current() == "1.1.0" and health(port)["version"] == "1.1.0"
        assert health(port)["medspacy"]  # the no-deps wheels are in the new slot too
        assert runner.starts == [{}, {"RADIANT_DB_MIGRATE_AT_START": "false"}, {}]
        assert db_schema(settings) == 2
        assert "1.0.0" in state["rollback_blocked"]  # reads schema 1 only: no way back
        # What the box reports to its fleet (status.json's software_update) says so too.
        reported = update_state(settings)
        assert reported is not None and reported["current"] == "1.1.0"
        assert reported["last"]["outcome"] == "applied" and reported["last"]["version"] == "1.1.0"
        assert updater.run_round()["last"]["outcome"] == "up_to_date"

        # A release that never becomes healthy: rolled back, reported, not retried.
        assert publish(capsys, release("1.2.0", 2, "unhealthy"), key_path)[0] == 0
        state = updater.run_round()
        assert state["last"]["outcome"] == "rolled_back"
        assert "healthz" in state["last"]["reason"] and "1.2.0" in state["failed"]
        reported = update_state(settings)
        assert reported is not None and reported["current"] == "1.1.0"
        assert reported["last"]["outcome"] == "rolled_back" and "1.2.0" in reported["failed"]
        assert slots.current() == "1.1.0" and health(port)["version"] == "1.1.0"
        assert updater.run_round()["last"]["outcome"] == "skipped"

        # A release whose migration fails after a healthy start: rolled back, schema untouched.
        assert publish(capsys, release("1.3.0", 3, "bad-migration"), key_path)[0] == 0
        state = updater.run_round()
        assert state["last"]["outcome"] == "rolled_back"
        assert "migration failed" in state["last"]["reason"]
        assert slots.current() == "1.1.0" and db_schema(settings) == 2

        # A tampered wheel in the bucket: refused before anything is installed.
        assert publish(capsys, release("1.4.0", 2), key_path)[0] == 0
        evil = tmp_path / "evil.whl"
        fake_wheel(tmp_path / "evil", "1.4.0", 2, "unhealthy").rename(evil)
        remote.rclone(
            "copyto",
            str(evil),
            f"raw:{remote.bucket}/fleet/releases/stable/1.4.0/wheels/radiantai-1.4.0-py3-none-any.whl",
        )
        state = updater.run_round()
        assert state["last"]["outcome"] == "refused" and "tampered" in state["last"]["reason"]
        assert not (apps / "1.4.0").exists() and not (apps / ".1.4.0.partial").exists()
        assert slots.current() == "1.1.0" and len(runner.starts) == 7

        # A channel signed by another key: refused.
        other = tmp_path / "other" / "key.pem"
        other.parent.mkdir()
        assert main(["fleet", "keygen", "--out", str(other)]) == 0
        assert publish(capsys, release("1.5.0", 2), other)[0] != 0  # its bundle is ours
        foreign = tmp_path / "bundles" / "1.6.0"
        fake_wheel(tmp_path / "wheels" / "1.6.0", "1.6.0", 2)
        build(
            foreign,
            tmp_path / "wheels" / "1.6.0",
            "1.6.0",
            "stable",
            signing.load_private_key(other),
        )
        assert publish(capsys, foreign, other)[0] == 0
        state = updater.run_round()
        assert state["last"]["outcome"] == "refused" and "signature" in state["last"]["reason"]
        assert not (apps / "1.6.0").exists() and slots.current() == "1.1.0"

        # Power lost right after the switch: the next round judges the new slot first.
        assert publish(capsys, release("1.7.0", 2), key_path)[0] == 0

        class PowerCut(Exception):
            pass

        class CutRunner(SlotProcess):
            def restart(self, env: dict[str, str]) -> None:
                runner.stop()
                raise PowerCut

        cut = Updater(
            settings,
            slots,
            for_box(settings),
            CutRunner(apps, port),
            key.public_key(),
            f"http://127.0.0.1:{port}/healthz",
            deadline_s=10,
        )
        with pytest.raises(PowerCut):
            cut.run_round()
        assert updater.state()["last"]["outcome"] == "trying" and slots.current() == "1.7.0"
        runner.restart({})  # the box boots on the new slot
        state = updater.run_round()
        assert state["last"] == state["last"] | {"outcome": "applied", "version": "1.7.0"}
        assert health(port)["version"] == "1.7.0"
    finally:
        runner.stop()


def test_a_local_bundle_with_a_changed_file_is_refused(tmp_path: Path) -> None:
    key = signing.generate()
    fake_wheel(tmp_path / "w", "2.0.0", 4)
    bundle = tmp_path / "b"
    document = build(bundle, tmp_path / "w", "2.0.0", "beta", key)
    assert document["schema_version"] == 4 and document["channel"] == "beta"
    assert verify(bundle, key.public_key()).version == "2.0.0"
    with pytest.raises(ReleaseError, match="signature"):
        verify(bundle, signing.generate().public_key())
    (bundle / "wheels" / "extra.whl").write_bytes(b"x")
    with pytest.raises(ReleaseError, match=r"not in release\.json"):
        verify(bundle, key.public_key())
    (bundle / "wheels" / "extra.whl").unlink()
    wheel = next((bundle / "wheels").glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    with pytest.raises(ReleaseError, match="tampered"):
        verify(bundle, key.public_key())
    doc = json.loads((bundle / "release.json").read_text())
    doc["version"] = "2.0.1"
    (bundle / "release.json").write_text(json.dumps(doc))
    with pytest.raises(ReleaseError, match="signature"):
        verify(bundle, key.public_key())


def test_a_release_without_its_no_deps_wheels_is_refused(tmp_path: Path) -> None:
    key = signing.generate()
    app = fake_wheel(tmp_path / "w", "3.0.0", 1)
    next((tmp_path / "w").glob("medspacy-*.whl")).unlink()
    with pytest.raises(ReleaseError, match=r"no wheel for medspacy==1\.3\.1"):
        build(tmp_path / "b", tmp_path / "w", "3.0.0", "stable", key)
    alone = tmp_path / "alone"
    alone.mkdir()
    app.rename(alone / app.name)
    document = build(tmp_path / "b2", alone, "3.0.0", "stable", key, no_deps=())
    assert document["no_deps"] == []
    # A document that names a no-deps requirement its files lack (signed, so well-formed
    # otherwise) is refused before anything is installed.
    document = signing.sign(
        {k: v for k, v in document.items() if k != "signature"} | {"no_deps": ["medspacy==1.3.1"]},
        key,
    )
    (tmp_path / "b2" / "release.json").write_text(json.dumps(document))
    with pytest.raises(ReleaseError, match="no wheel for medspacy"):
        verify(tmp_path / "b2", key.public_key())
