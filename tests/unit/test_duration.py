"""Go duration syntax, as -resync-period took it."""

from __future__ import annotations

import pytest

from ksm_sync.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h0m0s", 3600), ("90s", 90), ("1m30s", 90), ("500ms", 0.5), ("1.5h", 5400), ("0", 0),
     ("2h45m", 9900), ("100us", 0.0001), ("1µs", 0.000001)],
)  # fmt: skip
def test_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "x", "10", "1h-1m", "-1s", "1d", "1 h", "h"])
def test_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3600, "1h0m0s"), (90, "1m30s"), (5, "5s"), (0.3, "300ms"), (90.5, "1m30.5s"), (0, "0s")],
)
def test_formats_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
