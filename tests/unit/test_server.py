"""loop's endpoints without a cluster: listen addresses, and readiness from pass reports."""

from __future__ import annotations

import time

import pytest

from ksm_sync.errors import UsageError
from ksm_sync.report import Report
from ksm_sync.server import Health, parse_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":8080", ("", 8080)),
        ("127.0.0.1:9", ("127.0.0.1", 9)),
        ("[::1]:0", ("::1", 0)),
        ("pod.local:8080", ("pod.local", 8080)),
    ],
)
def test_listen_addresses_take_go_syntax(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["8080", "host:", "host:http", ":70000"])
def test_listen_addresses_without_a_port_are_refused(address: str) -> None:
    with pytest.raises(UsageError):
        parse_address(address)


def test_readiness_goes_stale_without_a_new_good_pass() -> None:
    health = Health(max_age=0.2)
    assert health.ready() == (False, "no pass has finished yet")

    health.record(Report(counts={"created": 1, "skipped": 2, "conflicts": 1}))
    assert health.ready()[0]  # skips and conflicts: nothing a retry would fix
    time.sleep(0.3)
    ok, why = health.ready()
    assert not ok and "the last good pass ended" in why

    health.record(Report(counts={"failed": 1}))
    assert health.ready() == (False, "the last pass did not succeed: 1 mirrors failed")
    health.record(Report(error="remote API server: GET /api/v1/services: refused"))
    assert not health.ready()[0]
