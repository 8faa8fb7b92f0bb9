"""GDCM as the last pixel data decoder for 12-bit lossy JPEG (JPEG Extended, Process 2 and 4,
1.2.840.10008.1.2.4.51; PS3.5 A.4.1), tried by pydicom after its own plugins refuse.

pylibjpeg refuses some real 12-bit JPEG Extended streams (NEMA WG04 ``*_JPLY``: "scan start
must be zero"), Pillow has no 12-bit JPEG and pydicom's GDCM plugin declines 12-bit precision;
GDCM itself (python-gdcm) decodes them, as dcmtk does. Its bundled JPEG library writes its
warnings straight to the process's stderr (C stdio, not GDCM's trace streams), which would
break the JSON log; so each frame is decoded in a short-lived child process whose stderr goes
nowhere (``python -m appliance.dicom.gdcm_fallback``: a JSON header line and the frame on
stdin, the decoded frame on stdout). It is rare input, so a process per frame is acceptable.

:func:`register` adds the plugin to pydicom's decoder for that transfer syntax (after the
others); :func:`last_decoder` says whether the last decode on this thread went through it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from typing import Any

from pydicom import uid
from pydicom.pixels.decoders.base import get_decoder

LABEL = "gdcm"
PLUGIN = "gdcm-fallback"
SYNTAXES = (uid.JPEGExtended12Bit,)
TIMEOUT_S = 60.0
_used = threading.local()
_lock = threading.Lock()


def is_available(transfer_syntax: str) -> bool:
    """pydicom's plugin check: GDCM is installed and the syntax is one this plugin decodes."""
    if transfer_syntax not in SYNTAXES:
        return False
    try:
        import gdcm  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def register() -> None:
    """Add this plugin to pydicom's decoders (idempotent), and take pydicom's own GDCM plugin
    out of every decoder: in process, GDCM's codecs (OpenJPEG, its JPEG library) write their
    warnings to our stderr, and pydicom's plugin declines the 12-bit JPEG anyway."""
    with _lock:
        _register()


def _register() -> None:
    for syntax in uid.AllTransferSyntaxes:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            continue
        with contextlib.suppress(ValueError):  # absent, or already taken out
            decoder.remove_plugin(LABEL)
    for syntax in SYNTAXES:
        decoder = get_decoder(syntax)
        if PLUGIN not in decoder.available_plugins and PLUGIN not in decoder.missing_dependencies:
            decoder.add_plugin(PLUGIN, (__name__, "decode_frame"))


def mark_unused() -> None:
    _used.name = None


def last_decoder() -> str | None:
    """``"gdcm"`` when a frame was decoded by this plugin on this thread since
    :func:`mark_unused`, else None."""
    return getattr(_used, "name", None)


def decode_frame(src: bytes, runner: Any) -> bytes:
    """pydicom's plugin entry: decode one encapsulated frame in a child process."""
    header: dict[str, Any] = {
        "rows": int(runner.rows),
        "columns": int(runner.columns),
        "samples": int(runner.samples_per_pixel),
        "bits_allocated": int(runner.bits_allocated),
        "bits_stored": int(runner.bits_stored),
        "signed": int(runner.pixel_representation),
        "photometric": str(runner.photometric_interpretation),
        "syntax": str(runner.transfer_syntax),
    }
    done = subprocess.run(
        [sys.executable, "-m", __name__],
        input=json.dumps(header).encode() + b"\n" + src,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        timeout=TIMEOUT_S,
        check=False,
    )
    expected = int(runner.rows) * int(runner.columns) * int(runner.samples_per_pixel)
    expected *= int(runner.bits_allocated) // 8
    if done.returncode != 0 or len(done.stdout) < expected:
        raise RuntimeError("GDCM could not decode the frame")
    _used.name = LABEL
    return done.stdout[:expected]


def _decode_in_child(header: dict[str, Any], src: bytes) -> bytes:
    """Decode ``src`` with GDCM (runs in the child process)."""
    import gdcm

    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    pixel_data = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    pixel_data.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((header["columns"], header["rows"], 1))
    image.SetDataElement(pixel_data)
    kind = gdcm.PhotometricInterpretation.GetPIType(header["photometric"])
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(header["syntax"])))
    bits = header["bits_stored"]
    image.SetPixelFormat(
        gdcm.PixelFormat(
            header["samples"], header["bits_allocated"], bits, bits - 1, header["signed"]
        )
    )
    return bytes(image.GetBuffer().encode("utf-8", "surrogateescape"))


def _main() -> int:
    raw = sys.stdin.buffer.read()
    line, _, src = raw.partition(b"\n")
    frame = _decode_in_child(json.loads(line), src)
    if not frame:
        return 1
    sys.stdout.buffer.write(frame)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
