"""``radiant model install``: a fake MedGemma-shaped checkpoint (a real Gemma 3 config.json and a
few KB of random bytes as weights) installed from a folder and from a mirror served by a real
HTTP server on 127.0.0.1; each bad input gives a clear error and leaves the previous model
enabled with nothing partial left; resume after an interrupted transfer; verify, enable, list,
and the CLI."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from ai.engines.transformers_engine import inspect_checkpoint
from ai.install import service
from ai.install.audit import ModelAudit
from ai.install.errors import (
    CheckpointError,
    ManifestError,
    SourceError,
    TargetError,
    VerificationError,
)
from ai.install.manifest import MANIFEST_NAME, RECORD_NAME, make_manifest
from ai.install.sources import FolderSource, MirrorSource
from appliance.audit.models import Actor
from appliance.audit.service import recorder
from appliance.config import Settings
from radiant.cli import main
from tests.servers import free_port

ACTOR = Actor.system("test")


def audit(db: sqlite_utils.Database) -> ModelAudit:
    """The appliance's audit trail, as the command line hands it to model installation."""
    return recorder(db, ACTOR, "model")

# The shape of google/medgemma-1.5-4b-it's config.json (Gemma 3 4B + SigLIP).
GEMMA3_CONFIG: dict[str, Any] = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "image_token_index": 262144,
    "mm_tokens_per_image": 256,
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 34,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "sliding_window": 1024,
        "max_position_embeddings": 131072,
        "vocab_size": 262208,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 896,
        "patch_size": 14,
    },
    "torch_dtype": "bfloat16",
}


def fake_checkpoint(folder: Path, seed: int = 1, config: dict[str, Any] | None = None) -> Path:
    """A checkpoint folder: Gemma 3 config.json, random 'weights', a nested file; manifest."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or GEMMA3_CONFIG), encoding="utf-8")
    rng = hashlib.sha256(str(seed).encode()).digest()
    (folder / "model-00001-of-00002.safetensors").write_bytes(rng * 256)  # 8 KiB
    (folder / "model-00002-of-00002.safetensors").write_bytes(os.urandom(5000))
    (folder / "tokenizer.json").write_text('{"version": "1.0"}', encoding="utf-8")
    (folder / "extra").mkdir()
    (folder / "extra" / "generation_config.json").write_text('{"do_sample": true}')
    (folder / MANIFEST_NAME).write_bytes(make_manifest(folder, revision=f"rev{seed}"))
    return folder


def _set_manifest(folder: Path, document: dict[str, Any]) -> None:
    (folder / MANIFEST_NAME).write_text(json.dumps(document), encoding="utf-8")


def _manifest(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / MANIFEST_NAME).read_text())
    return data


def _audit(db: sqlite_utils.Database, action: str) -> list[dict[str, Any]]:
    return [
        {**row, "detail": json.loads(row["detail"]) if row["detail"] else None}
        for row in db.query("SELECT * FROM audit_log WHERE action = ? ORDER BY id", [action])
    ]


def _models_entries(settings: Settings) -> list[str]:
    return sorted(
        p.name for p in service.models_dir(settings).iterdir() if p.name != ".install.lock"
    )


class _Handler(SimpleHTTPRequestHandler):
    """A static file server with single ``Range: bytes=N-`` support and scripted faults."""

    log: list[tuple[str, str | None]]
    faults: dict[str, list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        self.log.append((name, self.headers.get("Range")))
        queue = self.faults.get(name)
        fault = queue.pop(0) if queue else None
        if fault == "503":
            self.send_error(503)
            return
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "cut":  # half the body, then the connection drops
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextlib.contextmanager
def mirror(folder: Path, faults: dict[str, list[str]] | None = None) -> Iterator[Any]:
    """Serve ``folder`` on a free 127.0.0.1 port; yields (base URL, request log)."""
    log: list[tuple[str, str | None]] = []
    handler = type("H", (_Handler,), {"log": log, "faults": faults or {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ckpt", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _mirror_source(url: str, **kwargs: Any) -> MirrorSource:
    return MirrorSource(url, sleep=lambda _s: None, wait_s=0.0, **kwargs)


@pytest.fixture
def installed(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> Callable[[], service.InstallResult]:
    """Install checkpoint 'old' from a folder (so every failure test has a model to keep)."""

    def _do() -> service.InstallResult:
        source = fake_checkpoint(tmp_path / "old", seed=1)
        return service.install(settings, audit(db), FolderSource(source), name="old")

    return _do


def test_install_from_a_folder_verifies_enables_and_audits(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    source = fake_checkpoint(tmp_path / "usb" / "medgemma", seed=7)
    lines: list[str] = []
    result = service.install(settings, audit(db), FolderSource(source), progress=lines.append)

    assert result.name == f"medgemma-1.5-4b-it-{result.manifest.digest[:12]}"
    assert result.enabled and result.previous is None and not result.already_installed
    target = service.models_dir(settings) / result.name
    for entry in result.manifest.files:
        assert (target / entry.path).read_bytes() == (source / entry.path).read_bytes()
    assert (target / MANIFEST_NAME).read_bytes() == (source / MANIFEST_NAME).read_bytes()
    assert json.loads((target / RECORD_NAME).read_text())["manifest_sha256"] == (
        result.manifest.digest
    )
    # The engine's path now leads to it, and the engine's own check accepts it.
    link = settings.ai_model_path
    assert link.is_symlink() and os.readlink(link) == result.name
    assert inspect_checkpoint(link).model_type == "gemma3"
    assert service.enabled_name(settings) == result.name
    assert _models_entries(settings) == sorted([result.name, "medgemma-1.5-4b-it"])  # no staging
    assert lines[0].startswith("[1/5] config.json")  # config first, before any weight
    (row,) = _audit(db, "model.install")
    assert (row["outcome"], row["object_id"]) == ("success", result.name)
    assert row["detail"]["manifest_sha256"] == result.manifest.digest
    assert row["detail"]["files"] == 5 and row["detail"]["source"] == "folder"
    listed = service.list_models(settings)
    assert [(m.name, m.enabled, m.managed, m.revision) for m in listed] == [
        (result.name, True, True, "rev7")
    ]


def test_install_from_an_http_mirror(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    folder = fake_checkpoint(tmp_path / "www" / "ckpt", seed=3)
    with mirror(tmp_path / "www") as (url, log):
        source = _mirror_source(url)
        result = service.install(settings, audit(db), source, name="m1")
        source.close()
    assert service.enabled_name(settings) == "m1"
    assert result.fetched_bytes == result.manifest.total_bytes
    assert sorted(name for name, _ in log) == sorted(
        [f"ckpt/{MANIFEST_NAME}", *(f"ckpt/{e.path}" for e in result.manifest.files)]
    )
    for entry in result.manifest.files:
        installed = service.models_dir(settings) / "m1" / entry.path
        assert installed.read_bytes() == (folder / entry.path).read_bytes()
    assert _audit(db, "model.install")[0]["detail"]["source"] == "mirror"


def test_second_model_replaces_the_first_and_enable_rolls_back(
    settings: Settings,
    db: sqlite_utils.Database,
    tmp_path: Path,
    installed: Callable[[], service.InstallResult],
) -> None:
    installed()
    new = fake_checkpoint(tmp_path / "new", seed=2)
    result = service.install(settings, audit(db), FolderSource(new), name="new")
    assert (result.previous, service.enabled_name(settings)) == ("old", "new")
    assert service.enable_model(settings, audit(db), "old") == "new"
    assert service.enabled_name(settings) == "old"
    assert [r["detail"] for r in _audit(db, "model.enable")] == [{"previous": "new"}]
    # The same checkpoint again: nothing fetched, verified, enabled.
    again = service.install(settings, audit(db), FolderSource(new), name="new")
    assert again.already_installed and again.fetched_bytes == 0
    assert service.enabled_name(settings) == "new"


def _break_missing(folder: Path) -> None:
    (folder / "tokenizer.json").unlink()


def _break_size(folder: Path) -> None:
    with (folder / "model-00002-of-00002.safetensors").open("ab") as handle:
        handle.write(b"extra")


def _break_hash(folder: Path) -> None:
    path = folder / "model-00002-of-00002.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _break_traversal(folder: Path) -> None:
    document = _manifest(folder)
    document["files"].append({"path": "../escaped", "size": 1, "sha256": "0" * 64})
    _set_manifest(folder, document)


def _break_absolute(folder: Path) -> None:
    document = _manifest(folder)
    document["files"].append({"path": "/tmp/escaped", "size": 1, "sha256": "0" * 64})
    _set_manifest(folder, document)


def _break_symlink(folder: Path) -> None:
    (folder / "tokenizer.json").unlink()
    os.symlink(folder / "config.json", folder / "tokenizer.json")


def _break_not_gemma(folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / MANIFEST_NAME).write_bytes(make_manifest(folder))


def _break_json(folder: Path) -> None:
    (folder / MANIFEST_NAME).write_text('{"format": "radiant-model-manifest/1", "files": [')


def _break_too_big(folder: Path) -> None:
    document = _manifest(folder)
    for entry in document["files"]:
        if entry["path"].endswith(".safetensors"):
            entry["size"] = 10**15  # a petabyte: refused before fetching anything
    _set_manifest(folder, document)


BAD_INPUTS = [
    ("missing file", _break_missing, SourceError, r"tokenizer\.json: missing"),
    ("wrong size", _break_size, VerificationError, "the manifest lists"),
    ("wrong hash", _break_hash, VerificationError, "SHA-256"),
    ("path traversal", _break_traversal, ManifestError, r"'\.\.' segment"),
    ("absolute path", _break_absolute, ManifestError, "absolute"),
    ("symbolic link", _break_symlink, SourceError, "symbolic link"),
    ("not gemma 3", _break_not_gemma, CheckpointError, "not Gemma 3"),
    ("bad manifest json", _break_json, ManifestError, "not valid JSON"),
    ("no room on disk", _break_too_big, TargetError, "not enough room"),
]


# A web server serves a link's target like any file: links are refused by the folder source.
CASES = [
    pytest.param(via, *bad, id=f"{via}-{bad[0]}")
    for via in ("folder", "mirror")
    for bad in BAD_INPUTS
    if not (via == "mirror" and bad[0] == "symbolic link")
]


@pytest.mark.parametrize(("via", "label", "spoil", "error", "message"), CASES)
def test_each_bad_input_is_refused_and_the_old_model_stays(
    settings: Settings,
    db: sqlite_utils.Database,
    tmp_path: Path,
    installed: Callable[[], service.InstallResult],
    via: str,
    label: str,
    spoil: Callable[[Path], None],
    error: type[Exception],
    message: str,
) -> None:
    installed()
    before = _models_entries(settings)
    folder = fake_checkpoint(tmp_path / "www" / "ckpt", seed=9)
    spoil(folder)
    with contextlib.ExitStack() as stack:
        if via == "folder":
            source: Any = FolderSource(folder)
        else:
            url, log = stack.enter_context(mirror(tmp_path / "www"))
            source = _mirror_source(url)
            stack.callback(source.close)
        with pytest.raises(error, match=message) as caught:
            service.install(settings, audit(db), source, name="candidate")
    assert "\n" not in str(caught.value)
    assert service.enabled_name(settings) == "old"
    assert inspect_checkpoint(settings.ai_model_path).model_type == "gemma3"
    assert _models_entries(settings) == before  # no candidate, no staging
    failure = _audit(db, "model.install")[-1]
    assert failure["outcome"] == "failure"
    assert failure["detail"]["error"] == caught.value.kind  # type: ignore[attr-defined]
    if label == "not gemma 3" and via == "mirror":
        fetched = {name for name, _ in log}
        assert not any(name.endswith(".safetensors") for name in fetched)  # config was first


def test_unreachable_mirror_is_a_clear_error_and_changes_nothing(
    settings: Settings,
    db: sqlite_utils.Database,
    installed: Callable[[], service.InstallResult],
) -> None:
    installed()
    before = _models_entries(settings)
    slept: list[float] = []
    source = MirrorSource(
        f"http://127.0.0.1:{free_port()}/ckpt", attempts=3, wait_s=0.5, sleep=slept.append
    )
    with pytest.raises(SourceError, match="did not answer after 3 attempts") as caught:
        service.install(settings, audit(db), source, name="candidate")
    source.close()
    assert slept == [0.5, 1.0]  # bounded retries with doubling waits
    assert not caught.value.resumable  # nothing was staged
    assert service.enabled_name(settings) == "old"
    assert _models_entries(settings) == before


def test_pinned_manifest_hash_is_enforced(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    folder = fake_checkpoint(tmp_path / "ckpt")
    with pytest.raises(ManifestError, match="not the pinned"):
        service.install(settings, audit(db), FolderSource(folder), manifest_sha256="0" * 64)
    assert not settings.ai_model_path.exists()
    digest = hashlib.sha256((folder / MANIFEST_NAME).read_bytes()).hexdigest()
    service.install(settings, audit(db), FolderSource(folder), manifest_sha256=digest.upper())
    assert settings.ai_model_path.is_dir()


def test_interrupted_transfers_resume_with_range_requests(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    folder = fake_checkpoint(tmp_path / "www" / "ckpt", seed=4)
    big = "model-00001-of-00002.safetensors"
    # A 503 on the manifest, then the big file's body cut in half twice.
    faults = {f"ckpt/{MANIFEST_NAME}": ["503"], f"ckpt/{big}": ["cut", "cut"]}
    with mirror(tmp_path / "www", faults) as (url, log):
        source = _mirror_source(url, attempts=4)
        result = service.install(settings, audit(db), source, name="resumed")
        source.close()
    size = (folder / big).stat().st_size
    assert [r for name, r in log if name == f"ckpt/{big}"] == [
        None,
        f"bytes={size // 2}-",
        f"bytes={size // 2 + (size - size // 2) // 2}-",
    ]
    installed = service.models_dir(settings) / "resumed" / big
    assert installed.read_bytes() == (folder / big).read_bytes()
    assert result.fetched_bytes == result.manifest.total_bytes


def test_network_failure_keeps_the_parts_and_the_next_run_resumes(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    folder = fake_checkpoint(tmp_path / "www" / "ckpt", seed=5)
    big = "model-00001-of-00002.safetensors"
    with mirror(tmp_path / "www", {f"ckpt/{big}": ["cut", "503"]}) as (url, log):
        first = _mirror_source(url, attempts=2)
        with pytest.raises(SourceError, match="after 2 attempts") as caught:
            service.install(settings, audit(db), first, name="later")
        first.close()
        assert caught.value.resumable
        assert not settings.ai_model_path.exists()  # nothing enabled
        assert not (service.models_dir(settings) / "later").exists()
        second = _mirror_source(url)
        result = service.install(settings, audit(db), second, name="later")
        second.close()
    size = (folder / big).stat().st_size
    assert [r for name, r in log if name == f"ckpt/{big}"] == [
        None,
        f"bytes={size // 2}-",
        f"bytes={size // 2}-",
    ]
    assert result.reused_bytes > 0  # the files completed by the first run were not fetched again
    assert _models_entries(settings) == ["later", "medgemma-1.5-4b-it"]
    assert [r["detail"].get("resumable") for r in _audit(db, "model.install")] == [True, None]


def test_a_checkpoint_copied_by_hand_is_moved_aside_not_lost(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    by_hand = settings.ai_model_path
    shutil.copytree(fake_checkpoint(tmp_path / "copy", seed=6), by_hand)
    (by_hand / MANIFEST_NAME).unlink()
    new = fake_checkpoint(tmp_path / "new", seed=8)
    result = service.install(settings, audit(db), FolderSource(new), name="new")
    assert result.previous is not None and result.previous.startswith("medgemma-1.5-4b-it-manual-")
    aside = service.models_dir(settings) / result.previous
    assert (aside / "config.json").is_file()
    models = {m.name: m for m in service.list_models(settings)}
    assert models[result.previous].managed is False
    assert models["new"].enabled


def test_refusals_before_anything_is_fetched(
    settings: Settings, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    folder = fake_checkpoint(tmp_path / "ckpt")
    with pytest.raises(TargetError, match="the name the engine loads"):
        service.install(settings, audit(db), FolderSource(folder), name="medgemma-1.5-4b-it")
    with pytest.raises(TargetError, match="not a model name"):
        service.install(settings, audit(db), FolderSource(folder), name="../x")
    other = fake_checkpoint(tmp_path / "other", seed=2)
    service.install(settings, audit(db), FolderSource(other), name="taken")
    with pytest.raises(TargetError, match="already holds another checkpoint"):
        service.install(settings, audit(db), FolderSource(folder), name="taken")
    # Another installation holds the lock.
    fd = os.open(service.models_dir(settings) / service.LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(TargetError, match="another model installation is running"):
            service.install(settings, audit(db), FolderSource(folder), name="free")
    finally:
        os.close(fd)
    assert service.enabled_name(settings) == "taken"


def test_model_dir_outside_the_data_dir_is_refused_when_it_is_a_folder(
    db: sqlite_utils.Database, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "opt" / "model"
    elsewhere.mkdir(parents=True)
    settings = Settings(data_dir=tmp_path / "data", ai_model_dir=elsewhere)
    folder = fake_checkpoint(tmp_path / "ckpt")
    with pytest.raises(TargetError, match="unset RADIANT_AI_MODEL_DIR"):
        service.install(settings, audit(db), FolderSource(folder), name="x")
    elsewhere.rmdir()  # a missing path becomes a link to the installed folder
    service.install(settings, audit(db), FolderSource(folder), name="x")
    assert os.readlink(elsewhere) == str((tmp_path / "data" / "models" / "x").resolve())
    assert service.list_models(settings)[0].enabled


def test_verify_finds_altered_missing_and_extra_files(
    settings: Settings,
    db: sqlite_utils.Database,
    installed: Callable[[], service.InstallResult],
) -> None:
    result = installed()
    assert service.verify_model(settings, audit(db)).ok
    path = result.path
    _break_hash(path)
    (path / "tokenizer.json").unlink()
    (path / "stray.bin").write_bytes(b"?")
    report = service.verify_model(settings, audit(db), "old")
    assert sorted(report.problems) == [
        "model-00002-of-00002.safetensors: SHA-256 differs from the manifest",
        "stray.bin: not in the manifest",
        "tokenizer.json: missing",
    ]
    assert [r["outcome"] for r in _audit(db, "model.verify")] == ["success", "failure"]
    with pytest.raises(VerificationError, match="damaged"):
        service.enable_model(settings, audit(db), "old")


def test_cli_manifest_install_list_verify(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = fake_checkpoint(tmp_path / "ckpt", seed=11)
    (folder / MANIFEST_NAME).unlink()
    data = ["--data-dir", str(settings.data_dir)]
    assert main(["model", "manifest", str(folder), "--revision", "r11"]) == 0
    assert f"wrote {folder / MANIFEST_NAME} (sha256 " in capsys.readouterr().out
    assert main(["model", "install", str(folder), "--name", "cli", *data]) == 0
    out = capsys.readouterr().out
    assert "installed: cli (google/medgemma-1.5-4b-it @ r11), 5 files" in out
    assert "enabled: cli" in out and "RADIANT_AI_ENGINE=transformers" in out
    assert main(["model", "list", *data]) == 0
    assert "* cli  google/medgemma-1.5-4b-it @ r11  5 files" in capsys.readouterr().out
    assert main(["model", "verify", *data]) == 0
    assert "cli: 5 files" in capsys.readouterr().out

    bad = fake_checkpoint(tmp_path / "bad", seed=12)
    _break_hash(bad)
    assert main(["model", "install", str(bad), "--name", "bad", *data]) == 1
    err = capsys.readouterr().err
    assert err.startswith("radiant: model-00002-of-00002.safetensors: SHA-256 ")
    assert err.rstrip().endswith("the previous model stays enabled")
    url = f"http://127.0.0.1:{free_port()}/m"
    assert main(["model", "install", url, "--attempts", "1", *data]) == 1
    assert "did not answer after 1 attempts" in capsys.readouterr().err
    assert main(["model", "install", "ftp://x/y", *data]) == 2
    assert main(["model", "verify", "nope", *data]) == 1
    assert "no model 'nope'" in capsys.readouterr().err
