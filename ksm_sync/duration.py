"""Go's time.ParseDuration syntax (`1h0m0s`, `90s`, `1m30s`, `500ms`), as the Go flags took."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration; ValueError with the valid forms otherwise."""
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    if value.startswith("-"):
        raise ValueError(f"{text!r} is negative")
    body = value.removeprefix("+")
    position, total = 0, 0.0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        total += float(match[1]) * _UNITS[match[2]]
        position = match.end()
    if not body or position != len(body):
        raise ValueError(f"{text!r} is not a duration (Go syntax: 1h0m0s, 90s, 1m30s, 500ms)")
    return total


def format_duration(seconds: float) -> str:
    """Go's spelling: 3600 -> 1h0m0s, 90.5 -> 1m30.5s, 0.3 -> 300ms."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{round(secs, 3):g}s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text
