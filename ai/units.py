"""Measurement units: a closed list of UCUM codes (the unit system of DICOM SR NUM items,
PS3.16 CID 7181, and of FHIR Quantity) and the spellings a model may use for them. A unit not
on the list is not a unit the appliance passes on: the safety layer keeps the number and flags
"unit not recognised"."""

from __future__ import annotations

ALIASES: dict[str, str] = {
    "mm": "mm",
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "centimetre": "cm",
    "centimetres": "cm",
    "m": "m",
    "mm2": "mm2",
    "mm^2": "mm2",
    "mm²": "mm2",
    "sq mm": "mm2",
    "cm2": "cm2",
    "cm^2": "cm2",
    "cm²": "cm2",
    "sq cm": "cm2",
    "mm3": "mm3",
    "mm^3": "mm3",
    "mm³": "mm3",
    "cm3": "cm3",
    "cm^3": "cm3",
    "cm³": "cm3",
    "cc": "cm3",
    "ml": "mL",
    "milliliter": "mL",
    "milliliters": "mL",
    "millilitre": "mL",
    "l": "L",
    "hu": "[hnsf'U]",
    "hounsfield": "[hnsf'U]",
    "hounsfield unit": "[hnsf'U]",
    "hounsfield units": "[hnsf'U]",
    "[hnsf'u]": "[hnsf'U]",
    "%": "%",
    "percent": "%",
    "deg": "deg",
    "degree": "deg",
    "degrees": "deg",
    "°": "deg",
    "s": "s",
    "ms": "ms",
    "1": "1",
    "": "1",
    "ratio": "1",
}

UCUM_CODES = frozenset(ALIASES.values())


def ucum_code(unit: str | None) -> str | None:
    """The UCUM code of a unit as written (``HU`` -> ``[hnsf'U]``, empty -> ``1``); None when
    the text is not one of the closed list's spellings."""
    text = (unit or "").strip()
    return ALIASES.get(text.lower(), ALIASES.get(text))
