"""Where the fragments of one incoming data set wait for their last one: memory, then a file.

The first ``memory_limit`` bytes are kept in memory; beyond that everything goes to an
anonymous temporary file in the data dir (unlinked at creation, so a crash leaves nothing), so
an association's memory does not grow with what its peer sends. A data set beyond
``max_bytes`` is not kept at all: its fragments are counted and dropped, and the caller answers
the C-STORE with a refusal (PS3.4 B.2.3 0xA700) when the last one arrives.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO

MEMORY_LIMIT = 4 << 20  # bytes kept in memory before spooling to disk


class Spool:
    """The bytes of one data set being received."""

    def __init__(self, directory: Path | None, max_bytes: int, memory_limit: int = MEMORY_LIMIT):
        self.directory = directory
        self.max_bytes = max_bytes
        self.memory_limit = memory_limit
        self.size = 0  # bytes received, kept or not
        self._memory = bytearray()
        self._file: IO[bytes] | None = None

    @property
    def too_large(self) -> bool:
        return self.size > self.max_bytes

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def write(self, data: memoryview | bytes) -> None:
        """Append one fragment (dropped, but counted, once the data set is too large)."""
        self.size += len(data)
        if self.too_large:
            self.discard()
            return
        if self._file is None and len(self._memory) + len(data) <= self.memory_limit:
            self._memory += data
            return
        if self._file is None:
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # closed by discard() (the spool outlives any one block)
            self._file = tempfile.TemporaryFile(  # noqa: SIM115
                dir=self.directory, prefix="dicom-spool-"
            )
            self._file.write(self._memory)
            self._memory = bytearray()
        self._file.write(data)

    def read(self, prefix: bytes = b"") -> bytes:
        """``prefix`` then everything kept, as one bytes object (the spool is emptied)."""
        if self._file is None:
            data = prefix + self._memory  # one copy
        else:
            self._file.seek(0)
            data = prefix + self._file.read()
        self.discard()
        return data

    def discard(self) -> None:
        """Drop what is kept (closing, hence deleting, the temporary file)."""
        self._memory = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None
