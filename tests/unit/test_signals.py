"""SIGTERM and SIGINT, in-process: what the handler may and may not do where it lands."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from loguru import logger

from ksm_sync.cli import _stop_on_signals


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_signal_that_lands_inside_a_log_line_still_stops_the_run(handlers: None) -> None:
    """Stop 23's CI: SIGTERM sent as soon as "pass done" was read landed while that line was
    being written, with loguru's lock held; the handler's own log line raised there, the stop
    was never set, and the loop ran on."""
    stop = _stop_on_signals()
    lines: list[str] = []

    def sink(message: object) -> None:
        if "pass done" in str(message):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs in this thread, between bytecodes: here
                pass
        lines.append(str(message))

    sink_id = logger.add(sink, format="{message}", catch=False)
    try:
        logger.info("pass done")  # must neither raise nor swallow the signal
        deadline = time.monotonic() + 5
        while not any("SIGTERM received" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.01)
    finally:
        logger.remove(sink_id)
    assert stop.is_set()
    assert lines[0].strip() == "pass done"


def test_a_second_signal_inside_a_log_line_exits_at_once(handlers: None) -> None:
    stop = _stop_on_signals()
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.wait(5)

    def sink(message: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass

    sink_id = logger.add(sink, format="{message}", catch=False)
    try:
        with pytest.raises(SystemExit) as exited:
            logger.info("a line")
    finally:
        logger.remove(sink_id)
    assert exited.value.code == 128 + signal.SIGTERM
