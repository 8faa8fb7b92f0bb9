"""Every log line is JSON (issue 16): a library's Python warning (pydicom quoting a UID) became
a raw text line carrying the value. It is a JSON event with the category and module only."""

from __future__ import annotations

import json
import warnings

import pytest

from appliance import logs


def test_a_library_warning_is_one_json_line_without_its_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with warnings.catch_warnings():
        logs.configure("info")
        warnings.simplefilter("always")
        warnings.warn_explicit(
            "Invalid value for VR UI: '1.2.826.0.1.3680043.2.1125.77'",
            UserWarning,
            "/x/site-packages/pydicom/valuerep.py",
            440,
            module="pydicom.valuerep",
        )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    events = [json.loads(line) for line in lines]  # every line is JSON
    (event,) = [e for e in events if e.get("event") == "library_warning"]
    assert event["category"] == "UserWarning" and event["origin"] == "pydicom.valuerep"
    assert "1.2.826.0.1.3680043.2.1125.77" not in "\n".join(lines)
