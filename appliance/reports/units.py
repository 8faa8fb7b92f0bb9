"""Measurement units as UCUM codes (the unit system of DICOM SR NUM items, PS3.16 CID 7181,
and of FHIR Quantity), and their display form."""

from __future__ import annotations

from ai.units import ucum_code

UCUM_SYSTEM = "http://unitsofmeasure.org"


_DISPLAY = {
    "[hnsf'U]": "HU",
    "1": "",
    "deg": "°",
    "mm2": "mm²",
    "cm2": "cm²",
    "mm3": "mm³",
    "cm3": "cm³",
}

#: Meanings used for DICOM Code Meaning of the UCUM units (every code of the closed list).
MEANINGS = {
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "mm2": "square millimeter",
    "cm2": "square centimeter",
    "mm3": "cubic millimeter",
    "cm3": "cubic centimeter",
    "mL": "milliliter",
    "L": "liter",
    "[hnsf'U]": "Hounsfield unit",
    "%": "Percent",
    "deg": "degree",
    "s": "second",
    "ms": "millisecond",
    "1": "no units",
}


def to_ucum(unit: str | None) -> str:
    """The UCUM code for a unit as written (``HU`` -> ``[hnsf'U]``). Only the closed list of
    :mod:`ai.units` is accepted: anything else becomes ``1`` (no unit), never free text; the
    safety layer flagged it "unit not recognised" when the model wrote it."""
    return ucum_code(unit) or "1"


def display(unit: str) -> str:
    """How a UCUM unit is printed next to a value (``[hnsf'U]`` -> ``HU``)."""
    return _DISPLAY.get(unit, unit)


def meaning(unit: str) -> str:
    return MEANINGS.get(unit, unit)
