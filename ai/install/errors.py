"""Why a model installation stopped; each message is one line saying what to do."""

from __future__ import annotations


class InstallError(Exception):
    """Base class; ``kind`` names the class of failure for the audit trail."""

    kind = "install"


class ManifestError(InstallError):
    """The manifest is missing, unreadable or unsafe."""

    kind = "manifest"


class SourceError(InstallError):
    """A file could not be read from the folder or the mirror.

    ``resumable``: a network failure after the retries; the files fetched so far are kept and
    the same command resumes.
    """

    kind = "source"

    def __init__(self, message: str, *, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


class VerificationError(InstallError):
    """A file's size or SHA-256 differs from the manifest."""

    kind = "verification"


class CheckpointError(InstallError):
    """The files are intact but are not a Gemma 3 / MedGemma checkpoint the engine loads."""

    kind = "checkpoint"


class TargetError(InstallError):
    """The models folder cannot take the installation (name taken, no space, busy, ...)."""

    kind = "target"
