"""Frame extraction: every image of a series becomes one or more ``Frame`` (classic slice,
enhanced multi-frame, Siemens mosaic tile, or a frame of a multi-frame object without
per-frame geometry).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from appliance.volumes.frames.base import Frame
from appliance.volumes.frames.classic import classic_frame
from appliance.volumes.frames.enhanced import enhanced_frames
from appliance.volumes.frames.mosaic import mosaic_count, mosaic_frames
from appliance.volumes.results import QANote

__all__ = ["Frame", "frames_of"]


def frames_of(dataset: Dataset, file_order: int, notes: list[QANote]) -> list[Frame]:
    """The frames of one file: enhanced multi-frame, mosaic tiles, a classic slice, or the frames
    of a multi-frame object without per-frame geometry (no position: not slices)."""
    if "PerFrameFunctionalGroupsSequence" in dataset:
        return enhanced_frames(dataset, file_order)
    mosaic = mosaic_count(dataset)
    if mosaic:
        return mosaic_frames(dataset, file_order, mosaic, notes)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        return [classic_frame(dataset, file_order * 1_000_000)]
    # A multi-frame object without per-frame geometry (cine, NM): frames are not slices.
    result = []
    for index in range(frames):
        frame = classic_frame(dataset, file_order * 1_000_000 + index)
        frame.frame_index = index
        frame.position = None
        result.append(frame)
    return result
