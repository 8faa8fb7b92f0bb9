"""The label of a diffusion-weighted volume, classic or enhanced images alike."""

from __future__ import annotations


def diffusion_label(b_value: float | None, direction: tuple[float, ...] | None) -> str:
    """``b=1000, direction (1, 0, 0)``: the b-value (s/mm2) and the gradient direction in the
    patient coordinate system (PS3.3 C.8.13.5.9); ``b=0`` without one."""
    if b_value is None:
        return "no diffusion"
    if not direction or len(direction) != 3:
        return f"b={b_value:g}"
    return f"b={b_value:g}, direction ({', '.join(f'{round(v, 3) + 0.0:g}' for v in direction)})"
