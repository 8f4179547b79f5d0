"""The one place a cagnet server's logging is set up: plain text for a person at a terminal, or
one JSON object per line for a log collector (`--log-format json`; docs/operations.md).

A record's structured fields travel in `extra={"fields": {...}}` (see `fields`): method, principal,
outcome, rule, duration_ms and the like. They name methods, parties, rules and outcomes only, never
a figure or a query's parameters, and the JSON line carries them as top-level keys.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any

FORMATS = ("text", "json")


class LogFormat(StrEnum):
    """The choices of a serve command's `--log-format`."""

    text = "text"
    json = "json"


_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Keys a field may not take: they are the line's own.
_RESERVED = frozenset({"time", "level", "logger", "message", "exception"})


def fields(**values: object) -> dict[str, Any]:
    """`extra=` for a log call: the structured fields a JSON line carries (None values left out)."""
    return {"fields": {k: v for k, v in values.items() if v is not None}}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update({k: v for k, v in extra.items() if k not in _RESERVED})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(log_format: str = "text", *, level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every logger's records at `level` and above to `stream` (stderr) in `log_format`,
    replacing whatever handlers the root logger had (a second call reconfigures)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(_TEXT)
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
