"""How engines render the parts of one user turn: consecutive text parts joined by a blank line
(Gemma 3's template trims each part), images untouched, and the OpenAI body built from that."""

from __future__ import annotations

from ai.engines import EngineRequest, ImagePart, TextPart, engine_parts, joined_parts
from ai.engines.base import PART_SEPARATOR
from ai.engines.openai_engine import EndpointConfig, OpenAIEngine
from ai.prompts import build_comparison, build_primary

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16


def _kinds(parts: tuple[object, ...]) -> list[str]:
    return ["text" if isinstance(p, TextPart) else "image" for p in parts]


def test_consecutive_text_parts_become_one_with_a_blank_line() -> None:
    image = ImagePart(jpeg=JPEG)
    parts = (
        TextPart(text="Instruction."),
        TextPart(text="PRIOR STUDY "),
        image,
        TextPart(text="SLICE 1"),
        TextPart(text="   "),
        TextPart(text="\nQuestion?"),
    )
    joined = joined_parts(parts)
    assert PART_SEPARATOR == "\n\n"
    assert joined == (
        TextPart(text="Instruction.\n\nPRIOR STUDY"),
        image,
        TextPart(text="SLICE 1\n\nQuestion?"),
    )
    # Nothing else changes: a turn without neighbouring texts comes back as it was.
    assert joined_parts(joined) == joined


def test_images_back_to_back_stay_separate_and_blank_text_disappears() -> None:
    first, second = ImagePart(jpeg=JPEG), ImagePart(jpeg=JPEG + b"\x01")
    joined = joined_parts((TextPart(text=" "), first, second, TextPart(text="Q")))
    assert joined == (first, second, TextPart(text="Q"))


def test_a_primary_prompt_never_has_two_text_parts_in_a_row() -> None:
    prompt = build_primary(modality="CT", image_count=3)
    joined = joined_parts(engine_parts(prompt, [JPEG] * 3))
    assert _kinds(joined) == ["text", "image", "text", "image", "text", "image", "text"]
    assert isinstance(joined[-1], TextPart)
    assert joined[-1].text.startswith("SLICE 3\n\nBased on the visual evidence")


def test_a_comparison_prompt_joins_labels_and_headers() -> None:
    prompt = build_comparison(modality="DX", prior_image_count=1, current_image_count=1)
    joined = joined_parts(engine_parts(prompt, [JPEG], [JPEG]))
    texts = [p.text for p in joined if isinstance(p, TextPart)]
    assert _kinds(joined) == ["text", "image", "text", "image", "text"]
    assert texts[0].endswith("\n\nPRIOR STUDY")
    assert texts[1] == "PRIOR\n\nCURRENT STUDY"
    assert texts[2].startswith("CURRENT\n\nBased on the visual evidence")


def test_openai_body_sends_the_joined_parts() -> None:
    engine = OpenAIEngine(EndpointConfig(url="http://127.0.0.1:9/v1", model="m"))
    try:
        prompt = build_primary(modality="DX", image_count=1)
        body = engine.build_body(EngineRequest(parts=engine_parts(prompt, [JPEG])))
    finally:
        engine.close()
    (user,) = body["messages"]
    content = user["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "text"]
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert content[2]["text"].startswith("Based on the visual evidence")
    assert not any("SLICE" in c.get("text", "") for c in content)
