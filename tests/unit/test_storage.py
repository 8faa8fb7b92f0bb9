"""The local object store: durable atomic writes, safe keys, partial-file recovery."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.storage import ObjectStore, StoredObject, UnsafeKey, instance_key, uid_segment
from appliance.storage.service import CHUNK_SIZE, TEMP_PREFIX

STUDY = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
SERIES = "1.2.840.113619.2.55.3.604688119.969.1268071029.321"
SOP = "1.2.840.113619.2.55.3.604688119.969.1268071029.322"


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "data" / "objects")


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def expected(key: str, data: bytes) -> StoredObject:
    return StoredObject(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())


# -- round trips -------------------------------------------------------------------------------


def test_creates_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "objects"
    store = ObjectStore(root)
    assert root.is_dir()
    assert store.root == root.resolve()


def test_put_bytes_round_trip(store: ObjectStore) -> None:
    data = b"DICM" + bytes(range(256)) * 10
    key = instance_key(STUDY, SERIES, SOP)
    result = store.put(key, data)
    assert result == expected(key, data)
    assert store.exists(key)
    with store.open(key) as stream:
        assert stream.read() == data
    assert store.path(key).read_bytes() == data
    assert store.hash_of(key) == result


def test_put_stream_round_trip_over_several_chunks(store: ObjectStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 17)
    result = store.put("exports/report.pdf", io.BytesIO(data))
    assert result == expected("exports/report.pdf", data)
    assert store.path("exports/report.pdf").read_bytes() == data


def test_put_stream_with_short_reads(store: ObjectStore) -> None:
    class Dribble(io.RawIOBase):
        """Returns at most 7 bytes per read, as a socket might."""

        def __init__(self, payload: bytes) -> None:
            self._payload = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self._payload.read(7 if size < 0 else min(size, 7))

    data = os.urandom(1000)
    result = store.put("x/y.bin", Dribble(data))  # type: ignore[arg-type]
    assert result == expected("x/y.bin", data)


def test_put_empty_object(store: ObjectStore) -> None:
    result = store.put("empty", b"")
    assert result == expected("empty", b"")
    assert store.path("empty").read_bytes() == b""


def test_put_file(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "upload.dcm"
    data = os.urandom(CHUNK_SIZE + 5)
    src.write_bytes(data)
    key = instance_key(STUDY, SERIES, SOP)
    assert store.put_file(key, src) == expected(key, data)
    assert store.path(key).read_bytes() == data
    assert src.read_bytes() == data


def test_objects_are_private(store: ObjectStore) -> None:
    store.put("a/b", b"phi")
    assert stat.S_IMODE(store.path("a/b").stat().st_mode) == 0o600


def test_missing_key(store: ObjectStore) -> None:
    assert not store.exists("nope/none.dcm")
    with pytest.raises(FileNotFoundError):
        store.open("nope/none.dcm")
    with pytest.raises(FileNotFoundError):
        store.hash_of("nope/none.dcm")


def test_delete(store: ObjectStore) -> None:
    store.put("a/b.dcm", b"1")
    store.delete("a/b.dcm")
    assert not store.exists("a/b.dcm")
    assert list(store.iter_keys()) == []
    with pytest.raises(FileNotFoundError):
        store.delete("a/b.dcm")
    store.delete("a/b.dcm", missing_ok=True)
    # the directory stays, and writing into it again works
    assert store.put("a/b.dcm", b"2").size == 1


def test_free_bytes(store: ObjectStore) -> None:
    assert store.free_bytes() > 0


# -- keys from UIDs ----------------------------------------------------------------------------


def test_instance_key_keeps_plain_uids() -> None:
    assert instance_key(STUDY, SERIES, SOP) == f"dicom/{STUDY}/{SERIES}/{SOP}.dcm"
    uid64 = "1." + "2" * 62
    assert len(uid64) == 64
    assert uid_segment(uid64) == uid64


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "..",
        ".",
        "../../etc",
        "a/b",
        "1.2/3.4",
        "1.2\\3",
        "\x00",
        "1.2\x00.3",
        "1.2.3\n",
        " 1.2.3",
        "1.2.3 ",
        "1..2",
        ".1.2",
        "1.2.",
        "1" * 65,
        "1." * 100,
        "x" * 200,
        "\u0661.\u0662.\u0663",  # Arabic-Indic digits: \d would match them, PS3.5 does not
        "1.2.\u0663",
        "ünïcødé",
        "h-" + "0" * 64,
        "\udcff",  # lone surrogate (a UID decoded with surrogateescape)
    ],
)
def test_instance_key_hashes_anything_else(uid: str) -> None:
    segment = uid_segment(uid)
    assert segment == "h-" + hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()


HOSTILE = [
    "../../etc",
    "a/b",
    "\x00",
    "..",
    "",
    "9" * 200,
    "ünïcødé/../../",
    "/etc/passwd",
    ".",
    "1.2.3",
    "1.2.3/",
    "1.2.3\x00",
    ".tmp-123",
    "C:\\Windows",
]


def test_hostile_uids_stay_inside_root_and_are_distinct(store: ObjectStore) -> None:
    keys = set()
    for study in HOSTILE:
        for sop in HOSTILE:
            key = instance_key(study, "1.2.3", sop)
            assert key.count("/") == 3
            path = store.path(key)
            assert path.resolve().is_relative_to(store.root)
            store.put(key, f"{study!r}|{sop!r}".encode("utf-8", "surrogatepass"))
            keys.add(key)
    assert len(keys) == len(HOSTILE) ** 2
    assert sorted(keys) == list(store.iter_keys())
    assert len({uid_segment(uid) for uid in HOSTILE}) == len(HOSTILE)
    for path in store.root.rglob("*"):
        assert path.resolve().is_relative_to(store.root)
    # nothing landed outside the root
    assert sorted(p.name for p in store.root.parent.iterdir()) == ["objects"]


# -- unsafe keys -------------------------------------------------------------------------------

UNSAFE = [
    "",
    "/etc/passwd",
    "/",
    "../outside",
    "a/../../outside",
    "a/../b",
    "./a",
    "a/./b",
    ".",
    "..",
    "a//b",
    "a/",
    "a\\b",
    "..\\outside",
    "a\x00b",
    ".tmp-abc",
    "a/.tmp-abc",
]


@pytest.mark.parametrize("key", UNSAFE)
def test_unsafe_keys_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(UnsafeKey):
        store.path(key)
    with pytest.raises(UnsafeKey):
        store.put(key, b"x")
    with pytest.raises(UnsafeKey):
        store.open(key)
    with pytest.raises(UnsafeKey):
        store.exists(key)
    with pytest.raises(UnsafeKey):
        store.delete(key, missing_ok=True)
    with pytest.raises(UnsafeKey):
        store.hash_of(key)
    assert list(store.root.parent.iterdir()) == [store.root]
    assert list(store.root.iterdir()) == []


def test_unsafe_key_is_a_value_error_with_a_clear_message(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match=r"'\.\.' path segment"):
        store.put("dicom/../x", b"x")
    with pytest.raises(UnsafeKey, match="absolute path"):
        store.put("/x", b"x")


def test_non_string_key_refused(store: ObjectStore) -> None:
    with pytest.raises(UnsafeKey, match="must be a str"):
        store.put(b"a/b", b"x")  # type: ignore[arg-type]


def test_symlink_out_of_root_refused(store: ObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeKey, match="outside the store root"):
        store.put("link/x.dcm", b"x")
    assert list(outside.iterdir()) == []


def test_unsafe_prefix_refused(store: ObjectStore) -> None:
    for prefix in ("../", "a/../", "/", "/etc/", "a//", "a\x00", "a\\b"):
        with pytest.raises(UnsafeKey):
            store.iter_keys(prefix)


# -- listing -----------------------------------------------------------------------------------


def test_iter_keys_sorted_as_strings(store: ObjectStore) -> None:
    keys = ["b", "a/b", "a.b", "a/c/d", "a-c", "dicom/1.2/3.dcm", "dicom/1.10/3.dcm", "Z"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.iter_keys()) == sorted(keys)
    assert list(store.iter_keys("a/")) == ["a/b", "a/c/d"]
    assert list(store.iter_keys("a")) == sorted(k for k in keys if k.startswith("a"))
    assert list(store.iter_keys("dicom/1.1")) == ["dicom/1.10/3.dcm"]
    assert list(store.iter_keys("dicom/1.2/")) == ["dicom/1.2/3.dcm"]
    assert list(store.iter_keys("missing/")) == []
    assert list(store.iter_keys("b/")) == []  # "b" is a file


# -- atomicity and crashes ---------------------------------------------------------------------


def test_overwrite_replaces_atomically(store: ObjectStore) -> None:
    key = instance_key(STUDY, SERIES, SOP)
    old, new = b"old" * 1000, b"new content"
    store.put(key, old)
    inode = store.path(key).stat().st_ino
    with store.open(key) as reader:
        result = store.put(key, new)
        # a reader that opened the old object keeps reading the whole old object
        assert reader.read() == old
    assert result == expected(key, new)
    assert store.path(key).read_bytes() == new
    assert store.path(key).stat().st_ino != inode  # renamed over, not rewritten in place
    assert temp_files(store.root) == []
    assert list(store.iter_keys()) == [key]


class FailingStream(io.RawIOBase):
    """Yields one chunk, then fails as a dropped network connection would."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls == 1:
            return b"x" * 4096
        raise ConnectionResetError("peer went away")


def test_failing_stream_leaves_no_temp_and_no_object(store: ObjectStore) -> None:
    key = instance_key(STUDY, SERIES, SOP)
    stream = FailingStream()
    with pytest.raises(ConnectionResetError):
        store.put(key, stream)  # type: ignore[arg-type]
    assert stream.calls == 2
    assert not store.exists(key)
    assert temp_files(store.root) == []
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
    assert list(store.iter_keys()) == []


def test_failing_stream_keeps_previous_object(store: ObjectStore) -> None:
    store.put("a/b.dcm", b"previous")
    with pytest.raises(ConnectionResetError):
        store.put("a/b.dcm", FailingStream())  # type: ignore[arg-type]
    assert store.path("a/b.dcm").read_bytes() == b"previous"
    assert temp_files(store.root) == []


def test_put_over_a_directory_fails_cleanly(store: ObjectStore) -> None:
    store.put("a/b/c", b"1")
    with pytest.raises(OSError):
        store.put("a/b", b"2")
    assert temp_files(store.root) == []
    assert list(store.iter_keys()) == ["a/b/c"]


def test_crash_mid_write_leaves_partial_that_start_up_removes(store: ObjectStore) -> None:
    """A real process dies (os._exit, no cleanup) in the middle of put()."""
    key = instance_key(STUDY, SERIES, SOP)
    store.put("dicom/kept.dcm", b"kept")
    script = textwrap.dedent(
        """
        import io, os, sys
        from pathlib import Path
        from appliance.storage import ObjectStore

        class Dies(io.RawIOBase):
            calls = 0
            def readable(self):
                return True
            def read(self, size=-1):
                self.calls += 1
                if self.calls == 1:
                    return b"partial" * 1000
                os._exit(17)

        ObjectStore(Path(sys.argv[1])).put(sys.argv[2], Dies())
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(store.root), key],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 17, run.stderr
    partials = temp_files(store.root)
    assert len(partials) == 1
    assert partials[0].parent == store.path(key).parent
    assert partials[0].stat().st_size == 7000
    assert not store.exists(key)
    assert list(store.iter_keys()) == ["dicom/kept.dcm"]
    assert list(store.iter_keys("dicom/")) == ["dicom/kept.dcm"]

    restarted = ObjectStore(store.root)
    assert restarted.remove_partials() == 1
    assert temp_files(store.root) == []
    assert restarted.remove_partials() == 0
    assert list(restarted.iter_keys()) == ["dicom/kept.dcm"]
    assert restarted.path("dicom/kept.dcm").read_bytes() == b"kept"


def test_remove_partials_counts_every_directory(store: ObjectStore) -> None:
    store.put("a/b/c.dcm", b"1")
    for directory in (store.root, store.root / "a", store.root / "a" / "b"):
        (directory / f"{TEMP_PREFIX}crash").write_bytes(b"junk")
    assert list(store.iter_keys()) == ["a/b/c.dcm"]
    assert store.remove_partials() == 3
    assert temp_files(store.root) == []
    assert list(store.iter_keys()) == ["a/b/c.dcm"]


def test_recreates_directory_removed_behind_its_back(store: ObjectStore) -> None:
    store.put("a/b/c.dcm", b"1")
    store.delete("a/b/c.dcm")
    (store.root / "a" / "b").rmdir()
    (store.root / "a").rmdir()
    assert store.put("a/b/d.dcm", b"2").size == 1
    assert list(store.iter_keys()) == ["a/b/d.dcm"]


# -- integrity ---------------------------------------------------------------------------------


def test_hash_of_detects_a_file_edited_on_disk(store: ObjectStore) -> None:
    key = instance_key(STUDY, SERIES, SOP)
    data = os.urandom(4096)
    written = store.put(key, data)
    assert store.hash_of(key) == written
    tampered = bytearray(data)
    tampered[100] ^= 0xFF
    store.path(key).write_bytes(bytes(tampered))
    reread = store.hash_of(key)
    assert reread.size == written.size
    assert reread.sha256 != written.sha256
    assert reread.sha256 == hashlib.sha256(tampered).hexdigest()
