"""Frames of classic images: one file per slice (plane from PS3.3 C.7.6.2, values from the
Modality LUT module, C.11.1).
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from appliance.volumes.frames.base import (
    Frame,
    float_tuple,
    float_value,
    frame_type_label,
    int_value,
    read_pixel_spacing,
    series_key,
)
from appliance.volumes.frames.diffusion import diffusion_label


def classic_frame(dataset: Dataset, order: int) -> Frame:
    """A classic image: plane from C.7.6.2, values from the Modality LUT module (C.11.1)."""
    image_type = [str(v) for v in (dataset.get("ImageType") or [])]
    position = float_tuple(dataset.get("ImagePositionPatient"))
    frame = Frame(
        dataset=dataset,
        order=order,
        position=np.asarray(position, dtype=np.float64)
        if position and len(position) == 3
        else None,
        orientation=float_tuple(dataset.get("ImageOrientationPatient")),
        pixel_spacing=read_pixel_spacing(dataset),
        thickness=float_value(dataset.get("SpacingBetweenSlices"))
        or float_value(dataset.get("SliceThickness")),
        rows=int(dataset.Rows),
        columns=int(dataset.Columns),
        slope=float_value(dataset.get("RescaleSlope"), 1.0) or 1.0,
        intercept=float_value(dataset.get("RescaleIntercept"), 0.0) or 0.0,
        rescale_type=str(dataset.get("RescaleType", "")),
        instance=int_value(dataset.get("InstanceNumber")),
    )
    if frame.orientation is not None and len(frame.orientation) != 6:
        frame.orientation = None
    echo = int_value(dataset.get("EchoNumbers"))
    temporal = int_value(dataset.get("TemporalPositionIdentifier"))
    temporal_count = int_value(dataset.get("NumberOfTemporalPositions"))
    acquisition = int_value(dataset.get("AcquisitionNumber"))
    b_value = float_value(dataset.get("DiffusionBValue"))
    # (0018,9089) beside (0018,9087) at the top level of a classic MR image: images of one
    # b-value along several gradient directions are several volumes (PS3.3 C.8.13.5.9 terms).
    direction = float_tuple(dataset.get("DiffusionGradientOrientation"))
    if direction is not None and len(direction) != 3:
        direction = None
    frame.keys = {
        "series": series_key(dataset),
        "frame_type": tuple(image_type[2:]),
        "echo": echo,
        "diffusion": (b_value, tuple(round(v, 4) for v in direction) if direction else None)
        if b_value is not None
        else None,
        "temporal": temporal,
        "acquisition": acquisition,
    }
    frame.labels = {
        "series": f"series {dataset.get('SeriesNumber', '')}".strip(),
        "frame_type": frame_type_label(image_type[2:]),
        "echo": f"echo {echo}",
        "diffusion": diffusion_label(b_value, direction),
        "temporal": f"time {temporal}" + (f" of {temporal_count}" if temporal_count else ""),
        "acquisition": f"acquisition {acquisition}",
    }
    return frame
