"""NIfTI-1 (``.nii.gz``) output and input of reconstructed volumes, with nibabel.

DICOM patient coordinates are LPS (x to the patient's left, y to posterior, z to head); NIfTI's
scanner space is RAS (x to the right, y to anterior, z to head). The NIfTI affine is therefore the
LPS affine with its first two rows negated: ``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``. The
voxel order is untouched (no flips), and the array is written as (x, y, z), the transpose of the
(z, y, x) array of a ``VolumeResult``. Both qform and sform carry the affine with code 1
(scanner-based). The files are gzip-compressed with a zero timestamp, so the same volume always
gives the same bytes.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from appliance.volumes.reconstruct import VolumeResult

#: Converts between LPS (DICOM) and RAS (NIfTI) affines; it is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, slots=True)
class NiftiVolume:
    """A volume read back from NIfTI: voxels as (z, y, x) and the LPS affine (index x, y, z)."""

    voxels: NDArray[Any]
    affine_lps: NDArray[np.float64]


def to_nifti_image(volume: VolumeResult) -> nib.Nifti1Image:
    """The ``Nifti1Image`` of a volume: (x, y, z) data, RAS affine in qform and sform."""
    data = np.ascontiguousarray(np.transpose(volume.voxels, (2, 1, 0)))
    affine_ras = LPS_TO_RAS @ volume.affine
    image = nib.Nifti1Image(data, affine_ras)  # type: ignore[no-untyped-call]
    image.set_qform(affine_ras, code=1)  # type: ignore[no-untyped-call]
    image.set_sform(affine_ras, code=1)  # type: ignore[no-untyped-call]
    image.header.set_xyzt_units(xyz="mm")  # type: ignore[no-untyped-call]
    image.header["descrip"] = volume.label.encode("ascii", "replace")[:79]
    return image


def nifti_bytes(volume: VolumeResult) -> bytes:
    """The ``.nii.gz`` file content of a volume."""
    return gzip.compress(to_nifti_image(volume).to_bytes(), compresslevel=6, mtime=0)


def write_nifti(volume: VolumeResult, path: Path) -> Path:
    """Write a volume to ``path`` (``.nii.gz``) through a temporary file, fsynced, then renamed."""
    content = nifti_bytes(volume)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_nifti(source: Path | bytes) -> NiftiVolume:
    """Read a ``.nii``/``.nii.gz`` file (or its bytes): voxels back to (z, y, x), affine to LPS.

    Scaling (scl_slope/scl_inter) in the header is applied, so values are the stored meaning.
    Extra dimensions (4D) stay last-to-first too: (t, z, y, x).
    """
    if isinstance(source, bytes):
        raw = gzip.decompress(source) if source[:2] == b"\x1f\x8b" else source
        loaded: object = nib.Nifti1Image.from_bytes(raw)
    else:
        loaded = nib.load(source)
    if not isinstance(loaded, nib.Nifti1Image):
        raise ValueError(f"not a NIfTI-1 image: {type(loaded).__name__}")
    image = loaded
    data = np.asanyarray(image.dataobj)
    voxels = np.transpose(data, tuple(reversed(range(data.ndim))))
    affine = np.asarray(image.affine, dtype=np.float64)
    return NiftiVolume(voxels=np.ascontiguousarray(voxels), affine_lps=LPS_TO_RAS @ affine)
