"""JSON logs through structlog (stdlib loggers of granian and NiceGUI included).

Log events carry ids (request, user, patient, study) and never PHI values: no names, no MRNs,
no query strings.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import PurePath
from typing import TextIO

import structlog

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of writing (it may be replaced after start-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# Libraries that log whole URLs (query strings may carry search words, i.e. PHI) stay quiet.
_QUIET = ("httpx", "httpx2", "httpcore", "urllib3", "huggingface_hub")


def configure(level: str = "info") -> None:
    """Route structlog and stdlib logging to JSON lines on stderr at ``level``."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(json_formatter())
    handler.addFilter(_caller_reports)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # pydicom's warnings quote element values, which may be PHI.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.showwarning = _log_warning


# Libraries whose failures always reach our caller as an exception, which refuses the input with
# a reason (a quarantine, a status): their own log of it, a traceback quoting the data, is noise.
_CALLER_REPORTS = ("pydicom",)


def _caller_reports(record: logging.LogRecord) -> bool:
    """Keep a library's error record as one line (the exception's class, no traceback, no
    text: it may quote the data) when its caller handles the failure (:data:`_CALLER_REPORTS`)."""
    if record.name.split(".", 1)[0] in _CALLER_REPORTS and (record.exc_info or record.exc_text):
        error = record.exc_info[1] if record.exc_info else None
        record.msg, record.args = "library_error", ()
        record.__dict__["error"] = type(error).__name__ if error is not None else "unknown"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
    return True


def _origin(filename: str) -> str:
    """The module a warning came from, as a dotted name (no user data in it)."""
    parts = PurePath(filename).with_suffix("").parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    return ".".join(parts[-3:])


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Python warnings (pydicom's, other libraries') as JSON log events: the category and the
    module only. Their text is dropped: it quotes values (names, UIDs) from the data."""
    structlog.get_logger("radiant.warnings").warning(
        "library_warning", category=category.__name__, origin=_origin(filename), line=lineno
    )


def json_formatter() -> logging.Formatter:
    """A stdlib formatter that renders records as the same JSON lines as structlog's."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder(allow=["error"])],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def granian_config() -> dict[str, object]:
    """``logging.config.dictConfig`` for granian's own loggers: JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "formatters": {"json": {"()": "appliance.logs.json_formatter"}},
        "handlers": {"console": handler, "access": handler},
    }


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
