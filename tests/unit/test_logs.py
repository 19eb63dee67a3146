"""Log redaction and progress lines, in-process: no cluster."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator

import pytest
from loguru import logger

from ksm_sync import logs
from ksm_sync.apply import Outcome
from ksm_sync.plan import Change
from ksm_sync.progress import Progress


@pytest.fixture
def captured() -> Iterator[list[str]]:
    """The JSON sink's lines, for tests that log in-process."""
    lines: list[str] = []
    logger.remove()
    logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message} {extra}")
    yield lines
    logger.remove()


def test_json_sink_redacts_tokens_wherever_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    logs.secret("s3cr3t-t0ken-value")
    logs.configure("debug", "json")
    try:
        logger.bind(header="Bearer abc.def-ghi", nested={"t": ["s3cr3t-t0ken-value"]}).debug(
            "sending {}", "s3cr3t-t0ken-value"
        )
    finally:
        logger.remove()
    line = json.loads(capsys.readouterr().err)
    assert line["message"] == "sending [redacted]"
    assert line["header"] == "Bearer [redacted]"
    assert line["nested"] == {"t": ["[redacted]"]}


def test_a_long_apply_logs_its_progress(captured: list[str]) -> None:
    change = Change("create", "Service", "m", None, None, None, "new")
    progress = Progress(4, interval=0.1)
    for _ in range(4):
        time.sleep(0.06)
        progress.record(Outcome(change, "done"))
    progress.close()

    lines = [line for line in captured if line.startswith("applied ")]
    assert lines, captured
    for line in lines:
        assert re.match(r"applied [0-4]/4 changes \(0 failed or in conflict\) after 0s ", line)
        assert "'total': 4" in line


def test_a_short_apply_logs_no_progress(captured: list[str]) -> None:
    change = Change("create", "Service", "m", None, None, None, "new")
    progress = Progress(2)
    progress.record(Outcome(change, "done"))
    progress.record(Outcome(change, "done"))
    progress.close()

    assert not captured


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_token_escapes_while_threads_register_others(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: observe threads register tokens while a sink redacts in another thread. The
    set of secrets changing size mid-iteration sent loguru to its fallback, which printed the
    raw record, token and all."""
    for i in range(300):
        logs.secret(f"base-token-{i:04d}-abcdefgh")
    logs.configure("debug", fmt)
    tokens: list[str] = []

    def work(thread: int) -> None:
        for i in range(150):
            token = f"thread-{thread}-token-{i:04d}-{'x' * 12}"
            tokens.append(token)
            logs.secret(token)
            logger.bind(token=token).info("request with {}", token)

    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logger.remove()
    err = capsys.readouterr().err
    assert err.count("[redacted]") >= 8 * 150
    assert "Logging error" not in err and "dropped" not in err
    assert not [t for t in tokens if t in err]
