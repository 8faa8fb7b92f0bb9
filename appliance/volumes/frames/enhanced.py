"""Frames of an enhanced multi-frame object, read from its per-frame and shared functional
groups (PS3.3 C.7.6.16) and dimension index values (C.7.6.17).
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

# Dimension index pointers that are spatial (handled by the plane position instead).
_SPATIAL_DIMENSIONS = frozenset({0x00209056, 0x00209057, 0x00200032})


def _group_item(dataset: Dataset, per_frame: Dataset, keyword: str) -> Dataset | None:
    """A functional group macro for one frame: per-frame first, else shared (C.7.6.16)."""
    for container in (per_frame, _shared(dataset)):
        if container is not None and keyword in container and len(container[keyword].value):
            item: Dataset = container[keyword].value[0]
            return item
    return None


def _shared(dataset: Dataset) -> Dataset | None:
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        item: Dataset = shared[0]
        return item
    return None


def _frame_type_item(dataset: Dataset, per_frame: Dataset) -> Dataset | None:
    for container in (per_frame, _shared(dataset)):
        if container is None:
            continue
        for element in container:
            if element.keyword.endswith("FrameTypeSequence") and len(element.value):
                item: Dataset = element.value[0]
                return item
    return None


def enhanced_frames(dataset: Dataset, file_order: int) -> list[Frame]:
    """Frames of an enhanced multi-frame object from its functional groups (PS3.3 C.7.6.16)."""
    pointers = [
        int(item.DimensionIndexPointer)
        for item in dataset.get("DimensionIndexSequence") or []
        if "DimensionIndexPointer" in item
    ]
    frames = []
    top_slope = float_value(dataset.get("RescaleSlope"), 1.0) or 1.0
    top_intercept = float_value(dataset.get("RescaleIntercept"), 0.0) or 0.0
    for index, per_frame in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        position_item = _group_item(dataset, per_frame, "PlanePositionSequence")
        orientation_item = _group_item(dataset, per_frame, "PlaneOrientationSequence")
        measures = _group_item(dataset, per_frame, "PixelMeasuresSequence")
        transform = _group_item(dataset, per_frame, "PixelValueTransformationSequence")
        content = _group_item(dataset, per_frame, "FrameContentSequence")
        echo_item = _group_item(dataset, per_frame, "MREchoSequence")
        diffusion_item = _group_item(dataset, per_frame, "MRDiffusionSequence")
        type_item = _frame_type_item(dataset, per_frame)

        position = float_tuple(position_item.get("ImagePositionPatient")) if position_item else None
        orientation = (
            float_tuple(orientation_item.get("ImageOrientationPatient"))
            if orientation_item
            else None
        )
        frame = Frame(
            dataset=dataset,
            order=file_order * 1_000_000 + index,
            frame_index=index,
            position=np.asarray(position, dtype=np.float64)
            if position and len(position) == 3
            else None,
            orientation=orientation if orientation and len(orientation) == 6 else None,
            pixel_spacing=read_pixel_spacing(measures) if measures else None,
            thickness=(
                float_value(measures.get("SpacingBetweenSlices"))
                or float_value(measures.get("SliceThickness"))
            )
            if measures
            else None,
            rows=int(dataset.Rows),
            columns=int(dataset.Columns),
            slope=(float_value(transform.get("RescaleSlope"), 1.0) or 1.0)
            if transform
            else top_slope,
            intercept=(float_value(transform.get("RescaleIntercept"), 0.0) or 0.0)
            if transform
            else top_intercept,
            rescale_type=str(transform.get("RescaleType", "")) if transform else "",
            instance=None,
        )
        frame_type = [str(v) for v in (type_item.get("FrameType") or [])] if type_item else []
        component = str(type_item.get("ComplexImageComponent", "")) if type_item else ""
        type_tokens = tuple(frame_type[2:]) + ((component,) if component else ())
        echo_time = float_value(echo_item.get("EffectiveEchoTime")) if echo_item else None
        b_value = float_value(diffusion_item.get("DiffusionBValue")) if diffusion_item else None
        direction: tuple[float, ...] | None = None
        if diffusion_item and diffusion_item.get("DiffusionGradientDirectionSequence"):
            direction = float_tuple(
                diffusion_item.DiffusionGradientDirectionSequence[0].get(
                    "DiffusionGradientOrientation"
                )
            )
        temporal = int_value(content.get("TemporalPositionIndex")) if content else None
        acquisition = int_value(content.get("FrameAcquisitionNumber")) if content else None
        stack = str(content.get("StackID", "")) if content else ""
        values = list(content.get("DimensionIndexValues") or []) if content else []
        if isinstance(values, int):
            values = [values]
        dimension = tuple(
            int(v)
            for v, pointer in zip(values, pointers, strict=False)
            if pointer not in _SPATIAL_DIMENSIONS
        )
        frame.keys = {
            "series": series_key(dataset),
            "stack": stack,
            "frame_type": tuple(frame_type[3:4]) or type_tokens,
            "echo": round(echo_time, 4) if echo_time is not None else None,
            "diffusion": (b_value, tuple(round(v, 4) for v in direction) if direction else None)
            if b_value is not None
            else None,
            "temporal": temporal,
            "acquisition": acquisition,
            "dimension": dimension,
        }
        frame.labels = {
            "series": f"series {dataset.get('SeriesNumber', '')}".strip(),
            "stack": f"stack {stack}",
            "frame_type": frame_type_label([*frame_type[3:4], component]),
            "echo": f"TE {echo_time:g} ms" if echo_time is not None else "echo",
            "diffusion": diffusion_label(b_value, direction),
            "temporal": f"time {temporal}",
            "acquisition": f"acquisition {acquisition}",
            "dimension": "dimension index " + ",".join(str(v) for v in dimension),
        }
        frames.append(frame)
    return frames
