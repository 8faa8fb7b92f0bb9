"""Why no series of a study can be analysed, series by series: as data (a code and its values
per series, which the screens say in their own language) and as the English sentence the
failed analysis row stores (:func:`words`)."""

from __future__ import annotations

from pydantic import BaseModel

from ai.prompts.series import SeriesInfo, load_selection_rules, refusal_words


class SeriesRefusal(BaseModel):
    """One series the selection rules refused, and why."""

    series_number: int | None
    description: str
    code: str  # a code of ai.prompts.series.REFUSAL_WORDS, "not_analysed" or "not_chosen"
    values: dict[str, str | int | float] = {}


def series_refusals(infos: list[SeriesInfo], modalities: tuple[str, ...]) -> list[SeriesRefusal]:
    """Each series of a study with the reason the last applicable rule refuses it; a modality
    not in ``modalities`` (or without a rule) is ``not_analysed``."""
    rules = load_selection_rules()
    found = []
    for info in sorted(infos, key=lambda i: (i.series_number is None, i.series_number or 0)):
        modality = info.modality.upper()
        applicable = [r for r in rules if modality in r.modality]
        values: dict[str, str | int | float]
        if modality not in modalities or not applicable:
            code, values = "not_analysed", {"modality": modality}
        else:
            code, values = applicable[-1].refusal(info) or ("not_chosen", {})
        found.append(
            SeriesRefusal(
                series_number=info.series_number,
                description=info.series_description,
                code=code,
                values=values,
            )
        )
    return found


def words(refusals: list[SeriesRefusal]) -> str:
    """The English sentence of a study's refusals (stored as the failed analysis's error)."""
    if not refusals:
        return "No series of this study can be analysed: it has no images."
    lines = []
    for item in refusals:
        name = f"series {item.series_number if item.series_number is not None else '?'}"
        if item.description:
            name += f" ({item.description})"
        if item.code == "not_analysed":
            reason = f"{item.values.get('modality') or 'unknown'} images are not analysed"
        elif item.code == "not_chosen":
            reason = "not chosen"
        else:
            reason = refusal_words(item.code, item.values)
        lines.append(f"{name}: {reason}")
    return "No series of this study can be analysed (no series fits the selection rules). " + (
        "; ".join(lines) + "."
    )
