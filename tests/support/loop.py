"""`ksm-sync loop` in the background, its JSON log read pass by pass.

Reliability tests wait for an outcome ("the mirrors are right and a pass found nothing to
do") and then count passes; this keeps those waits and counts in one place.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.cli import start_cli

_COUNT = re.compile(r"(\w+)=(\d+)")


@dataclass(frozen=True)
class PassSummary:
    """One pass's closing log line: its counts, or why it could not run."""

    at: float  # time.monotonic() when the line was read
    message: str
    counts: dict[str, int]

    @property
    def ran(self) -> bool:
        return self.message.startswith("pass done")

    @property
    def writes(self) -> int:
        keys = ("created", "updated", "recreated", "deleted")
        return sum(self.counts.get(k, 0) for k in keys)

    @property
    def quiet(self) -> bool:
        """Ran, and had nothing to do: the fixed point."""
        trouble = ("conflicts", "skipped", "failed", "held", "raced")
        return self.ran and self.writes == 0 and not any(self.counts.get(k) for k in trouble)


def summary(line: dict[str, Any]) -> PassSummary | None:
    message = str(line.get("message", ""))
    if not message.startswith(("pass done", "pass could not run")):
        return None
    counts = {} if not message.startswith("pass done") else dict(_COUNT.findall(message))
    return PassSummary(time.monotonic(), message, {k: int(v) for k, v in counts.items()})


@dataclass
class LoopRun:
    """A running `ksm-sync loop --log-format json`; stop() ends it with SIGTERM."""

    argv: list[str]
    env: dict[str, str] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    passes: list[PassSummary] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.proc = start_cli(["loop", *self.argv, "--log-format", "json"], env=self.env)
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"level": "raw", "message": raw.rstrip()}
            with self._lock:
                self.lines.append(line)
                if (done := summary(line)) is not None:
                    self.passes.append(done)

    @staticmethod
    def _drain(stream: Any) -> None:
        for _ in stream:
            pass

    def snapshot(self) -> list[PassSummary]:
        with self._lock:
            return list(self.passes)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Polls condition until true; returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"loop exited {self.proc.returncode}: {self.tail()}")
            if condition():
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"{what}: not after {timeout:.0f}s\n{self.tail()}")

    def wait_passes(self, count: int, timeout: float) -> None:
        """Until `count` more passes have finished."""
        target = len(self.snapshot()) + count
        self.wait_for(lambda: len(self.snapshot()) >= target, timeout, f"{count} more passes")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def messages(self, level: str | None = None) -> list[str]:
        with self._lock:
            return [str(x.get("message")) for x in self.lines if level in (None, x.get("level"))]

    def tail(self, count: int = 30) -> str:
        with self._lock:
            return "\n".join(json.dumps(x) for x in self.lines[-count:])
