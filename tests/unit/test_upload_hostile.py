"""Hostile files in a web upload (issue 16): each refused file says why in its own result and
the other files of the same upload are stored."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils
from fastapi.testclient import TestClient

from tests import hostile
from tests.unit.test_upload import by_name, post_files, small, stored_uids

Headers = Callable[[str], dict[str, str]]


def test_files_beyond_the_parser_limits_are_quarantined_beside_good_ones(
    client: TestClient, as_role: Headers, db: sqlite_utils.Database
) -> None:
    files = [
        (small(0).name, small(0).read_bytes()),
        ("nested.dcm", hostile.nested_sequences(1000)),
        ("long.dcm", hostile.length_beyond_input()),
        ("cut.dcm", hostile.base()[:1001]),
        (small(1).name, small(1).read_bytes()),
    ]
    response = post_files(client, as_role("technician"), files)
    assert response.status_code == 201, response.text
    results = by_name(response.json())
    assert "nested deeper than" in str(results["nested.dcm"]["reason"])
    assert "truncated" in str(results["long.dcm"]["reason"])
    assert "truncated" in str(results["cut.dcm"]["reason"])
    assert {results[n]["outcome"] for n in ("nested.dcm", "long.dcm", "cut.dcm")} == {"quarantined"}
    assert len(stored_uids(db)) == 2
