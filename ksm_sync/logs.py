"""Logging through loguru: readable text on a terminal, one JSON object per line for pipelines.

Both sinks redact secrets (the bearer tokens that `credentials` registers, and anything
after "Bearer "), whatever the level and wherever the text came from. On a terminal the
text sink can keep a status line (a pass's progress) below the log lines.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
}
TEXT_FORMAT = "<green>{time:YYYY-MM-DDTHH:mm:ss.SSSZ}</green> <level>{level: <7}</level> {message}"
REDACTED = "[redacted]"
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*")  # the HTTP scheme, not the word
# Replaced, never changed in place: a sink in one thread reads it while a pass's observe
# threads register tokens in others ("Set changed size during iteration" would send loguru to
# its fallback, which prints the raw record, token and all).
_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()
_write_lock = threading.Lock()
_status: str | None = None
_status_shown = False


def secret(value: str) -> None:
    """Registers a value that must never reach a log line (a token, read every pass)."""
    global _secrets
    if len(value) >= 8:  # a shorter value would redact ordinary words
        with _secrets_lock:
            _secrets = _secrets | {value}


def redact(text: str) -> str:
    for value in _secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scalar(v) for v in value]
    return redact(str(value))


def _safe(sink: Callable[[Any], None]) -> Callable[[Any], None]:
    """A sink that never raises: loguru's handling of a failing sink prints the raw record,
    secrets and all. What went wrong is said without any of the record."""

    @functools.wraps(sink)
    def write(message: Any) -> None:
        try:
            sink(message)
        except Exception as error:  # whatever it was, the record must not reach the output
            with contextlib.suppress(Exception):
                sys.stderr.write(f"ksm-sync: a log line was dropped ({type(error).__name__})\n")

    return write


@_safe
def _json_sink(message: Any) -> None:
    record = message.record
    line = {
        "time": record["time"].isoformat(),
        "level": record["level"].name.lower(),
        "message": redact(record["message"]),
        **{k: _scalar(v) for k, v in record["extra"].items()},
    }
    if record["exception"] is not None:
        line["exception"] = redact(str(record["exception"].value))
    with _write_lock:
        sys.stderr.write(json.dumps(line) + "\n")
        sys.stderr.flush()


@_safe
def _text_sink(message: Any) -> None:
    with _write_lock:
        if _status_shown:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.write(redact(str(message)))
        if _status_shown and _status:
            sys.stderr.write(_status)
        sys.stderr.flush()


def status(text: str | None) -> None:
    """Shows (or, with None, clears) the status line; only on a terminal in text format."""
    global _status, _status_shown
    if not status_line_enabled():
        return
    with _write_lock:
        _status = text
        sys.stderr.write("\r\x1b[K" + (text or ""))
        sys.stderr.flush()
        _status_shown = text is not None


_configured: dict[str, str] = {}


def status_line_enabled() -> bool:
    return _configured.get("format") == "text" and sys.stderr.isatty()


def configure(level: str, fmt: str) -> None:
    logger.remove()
    _configured["format"] = fmt
    if fmt == "json":
        logger.add(_json_sink, level=LEVELS[level], format="{message}", catch=False)
    else:
        logger.add(
            _text_sink,
            level=LEVELS[level],
            format=TEXT_FORMAT,
            colorize=sys.stderr.isatty(),
            catch=False,
        )
