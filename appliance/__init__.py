"""RadiantAI clinical backend: FastAPI app, SQLite store, domain services, DICOM I/O."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("radiantai")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
