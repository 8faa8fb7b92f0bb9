"""Measurement units as UCUM codes (the unit system of DICOM SR NUM items, PS3.16 CID 7181,
and of FHIR Quantity), and their display form."""

from __future__ import annotations

UCUM_SYSTEM = "http://unitsofmeasure.org"

_ALIASES = {
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

_DISPLAY = {
    "[hnsf'U]": "HU",
    "1": "",
    "deg": "°",
    "mm2": "mm²",
    "cm2": "cm²",
    "mm3": "mm³",
    "cm3": "cm³",
}

#: Meanings used for DICOM Code Meaning of the UCUM units above.
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
    """The UCUM code for a unit as written (``HU`` -> ``[hnsf'U]``); unknown text is kept."""
    text = (unit or "").strip()
    return _ALIASES.get(text.lower(), _ALIASES.get(text, text))


def display(unit: str) -> str:
    """How a UCUM unit is printed next to a value (``[hnsf'U]`` -> ``HU``)."""
    return _DISPLAY.get(unit, unit)


def meaning(unit: str) -> str:
    return MEANINGS.get(unit, unit)
