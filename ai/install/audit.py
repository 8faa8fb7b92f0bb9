"""How model installation records what it did: a callable the host passes in (the appliance's
hash-chained audit trail, bound to the database and the acting user), so that ``ai`` imports
nothing of the appliance. Every install, enable and verify calls it once, success or failure."""

from __future__ import annotations

from typing import Any, Protocol


class ModelAudit(Protocol):
    """Record one model action (``model.install``, ``model.enable``, ``model.verify``) on the
    model named ``object_id``; ``detail`` holds ids, sizes and digests only."""

    def __call__(
        self,
        action: str,
        *,
        object_id: str | None,
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None: ...
