"""MediaWatcher on temporary mount roots: media appearing and disappearing, listeners, thread."""

from __future__ import annotations

import os
import pwd
import shutil
import threading
from pathlib import Path

import pytest

from appliance.dicom.media import Media, MediaEvent, MediaWatcher, scan_media

USER = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    made = [tmp_path / "media", tmp_path / "run" / "media", tmp_path / "mnt"]
    for root in made:
        root.mkdir(parents=True)
    return made


def _watcher(roots: list[Path], interval_s: float = 2.0) -> tuple[MediaWatcher, list[MediaEvent]]:
    watcher = MediaWatcher(roots, interval_s)
    events: list[MediaEvent] = []
    watcher.listeners.append(events.append)
    return watcher, events


def test_media_appear_with_and_without_dicomdir_then_go(roots: list[Path]) -> None:
    media_root, run_media, mnt = roots
    (mnt / "cdrom").mkdir()  # an empty mount point: no disc in the drive
    watcher, events = _watcher(roots)
    assert watcher.poll() == [] and watcher.current() == []

    cd = mnt / "cdrom"
    (cd / "DICOMDIR").write_bytes(b"\x00" * 132)
    (cd / "A").mkdir()
    (cd / "A" / "IM1").write_bytes(b"x")
    stick = media_root / USER / "STICK"  # udisks2: /media/<user>/<label>
    stick.mkdir(parents=True)
    (stick / "scan.dcm").write_bytes(b"x")
    dvd = run_media / "someone" / "DVD"  # /run/media/<user>/<label>, user unknown here
    dvd.mkdir(parents=True)
    (dvd / "dicomdir").write_bytes(b"x")

    appeared = watcher.poll()

    assert [e.kind for e in appeared] == ["appeared"] * 3
    assert events == appeared
    assert watcher.current() == sorted(
        [
            Media(cd, "cdrom", has_dicomdir=True, file_count=2),
            Media(stick, "STICK", has_dicomdir=False, file_count=1),
            Media(dvd, "DVD", has_dicomdir=True, file_count=1),
        ],
        key=lambda m: str(m.path),
    )
    assert watcher.poll() == []  # nothing new: no repeated events

    shutil.rmtree(stick)
    gone = watcher.poll()
    assert [(e.kind, e.media.label) for e in gone] == [("disappeared", "STICK")]
    assert events[-1] == gone[0]
    assert {m.label for m in watcher.current()} == {"cdrom", "DVD"}


def test_plain_folder_under_media_and_excluded_data_disk(roots: list[Path]) -> None:
    media_root, _, mnt = roots
    usb0 = media_root / "usb0"  # usbmount style: /media/<label>
    usb0.mkdir()
    (usb0 / "IMG").write_bytes(b"x")
    data_disk = mnt / "data"
    (data_disk / "radiant").mkdir(parents=True)

    found = scan_media(roots, exclude=[data_disk / "radiant"])

    assert found == [usb0]


def test_file_count_is_capped(roots: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import appliance.dicom.media.watcher as media

    monkeypatch.setattr(media, "COUNT_LIMIT", 3)
    big = roots[2] / "big"
    big.mkdir()
    for n in range(5):
        (big / f"f{n}").write_bytes(b"x")
    (big / "DICOMDIR").write_bytes(b"x")

    watcher, _ = _watcher(roots)
    watcher.poll()

    assert watcher.current()[0].file_count is None


def test_a_failing_listener_does_not_stop_the_others(roots: list[Path]) -> None:
    watcher, events = _watcher(roots)

    def broken(event: MediaEvent) -> None:
        raise RuntimeError("listener bug")

    watcher.listeners.insert(0, broken)
    stick = roots[0] / "STICK"
    stick.mkdir()
    (stick / "a").write_bytes(b"x")

    watcher.poll()

    assert [e.media.label for e in events] == ["STICK"]


def test_thread_reports_media_and_stops(roots: list[Path]) -> None:
    watcher, _ = _watcher(roots, interval_s=0.05)
    appeared = threading.Event()
    disappeared = threading.Event()

    def listener(event: MediaEvent) -> None:
        (appeared if event.kind == "appeared" else disappeared).set()

    watcher.listeners.append(listener)
    watcher.start()
    try:
        stick = roots[2] / "usb"
        stick.mkdir()
        (stick / "a.dcm").write_bytes(b"x")
        assert appeared.wait(10)
        assert [m.label for m in watcher.current()] == ["usb"]
        shutil.rmtree(stick)
        assert disappeared.wait(10)
        assert watcher.current() == []
    finally:
        watcher.stop()
    assert watcher._thread is None
