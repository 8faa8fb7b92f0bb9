"""Bounds shared by the paged list endpoints (offset/limit query parameters)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

# SQLite binds integers as signed 64-bit: anything above overflows before the query runs. No list
# on the box comes near a billion rows, so that is the documented bound.
MAX_OFFSET = 1_000_000_000
MAX_LIMIT = 500

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")]
