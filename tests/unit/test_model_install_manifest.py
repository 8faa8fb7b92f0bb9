"""The model manifest: what a valid one is, each unsafe or malformed input refused by name,
and ``make_manifest`` on a folder (hidden entries skipped, symbolic links refused)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ai.install.errors import ManifestError
from ai.install.manifest import FORMAT, MANIFEST_NAME, make_manifest, parse_manifest

SHA = "a" * 64


def _raw(files: Any, **fields: Any) -> bytes:
    document = {"format": FORMAT, "model_id": "google/medgemma-1.5-4b-it", "files": files}
    document.update(fields)
    return json.dumps(document).encode()


def _file(path: str, size: int = 3, sha256: str = SHA) -> dict[str, Any]:
    return {"path": path, "size": size, "sha256": sha256}


def test_valid_manifest_parses_with_digest_and_config_first() -> None:
    raw = _raw([_file("model.safetensors", 10), _file("config.json", 5), _file("a/b.json", 1)])
    manifest = parse_manifest(raw)
    assert manifest.digest == hashlib.sha256(raw).hexdigest()
    assert manifest.total_bytes == 16
    assert [e.path for e in manifest.ordered()] == ["config.json", "a/b.json", "model.safetensors"]
    assert manifest.revision == ""


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([_file("config.json"), _file("../evil")], "'..' segment"),
        ([_file("config.json"), _file("a/../../evil")], "'..' segment"),
        ([_file("config.json"), _file("/etc/passwd")], "absolute"),
        ([_file("config.json"), _file("C:/x")], "absolute"),
        ([_file("config.json"), _file("a\\b")], "backslash"),
        ([_file("config.json"), _file("a//b")], "empty"),
        ([_file("config.json"), _file("./a")], "'.'"),
        ([_file("config.json"), _file("a\nb")], "control character"),
        ([_file("config.json"), _file(MANIFEST_NAME)], "reserved"),
        ([_file("config.json"), _file("config.json")], "listed twice"),
        ([_file("config.json"), _file("a"), _file("a/b")], "as a file and as the folder"),
        ([_file("model.safetensors")], "config.json"),
        ([_file("config.json", size=-1)], "size"),
        ([_file("config.json", size=True)], "size"),  # type: ignore[arg-type]
        ([_file("config.json", sha256="xyz")], "sha256"),
        ([], "non-empty list"),
        ("config.json", "non-empty list"),
        ([["config.json", 3, SHA]], "object"),
    ],
)
def test_bad_file_lists_are_refused_by_name(files: Any, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(_raw(files))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "JSON object"),
        (_raw([_file("config.json")], format="other/1"), "format"),
        (_raw([_file("config.json")], model_id=""), "model_id"),
        (_raw([_file("config.json")], model_id=7), "model_id"),
        (b" " * (4 * 1024 * 1024 + 1), "larger than"),
    ],
)
def test_bad_documents_are_refused_by_name(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw)


def test_make_manifest_hashes_files_skips_hidden_and_refuses_links(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "gemma3"}')
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x01\x02")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "x.metadata").write_text("hidden")
    (folder / ".gitattributes").write_text("hidden")
    raw = make_manifest(folder, revision="abc", license_text="terms")
    manifest = parse_manifest(raw)
    assert {e.path: (e.size, e.sha256) for e in manifest.files} == {
        "config.json": (24, hashlib.sha256(b'{"model_type": "gemma3"}').hexdigest()),
        "sub/w.bin": (3, hashlib.sha256(b"\x00\x01\x02").hexdigest()),
    }
    assert (manifest.revision, manifest.license) == ("abc", "terms")

    os.symlink(folder / "config.json", folder / "linked.json")
    with pytest.raises(ManifestError, match="symbolic link"):
        make_manifest(folder)


def test_make_manifest_of_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(ManifestError, match=r"config\.json"):
        make_manifest(tmp_path)
    with pytest.raises(ManifestError, match="no such folder"):
        make_manifest(tmp_path / "missing")
