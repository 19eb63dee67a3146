"""Progress of a pass's writes, so that a long pass is visibly alive and measurably advancing.

Every INTERVAL seconds a log line ("applied 1200/10000 changes"); a pass shorter than
that logs none. On a terminal (text format) a status line also counts up below the logs.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

from loguru import logger

from ksm_sync import logs
from ksm_sync.apply import Outcome

INTERVAL = 5.0
STATUS_INTERVAL = 0.25


class Progress:
    """Counts the outcomes of `total` changes and reports them until closed."""

    def __init__(
        self,
        total: int,
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
        interval: float = INTERVAL,
    ) -> None:
        self.total, self.interval, self.on_outcome = total, interval, on_outcome
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if total > 0:
            context = contextvars.copy_context()  # the pass id, in the reporter's lines
            self._thread = threading.Thread(
                target=context.run, args=(self._report,), name="progress", daemon=True
            )
            self._thread.start()

    def record(self, outcome: Outcome) -> None:
        """apply's on_outcome hook."""
        if self.on_outcome:
            self.on_outcome(outcome)
        with self._lock:
            self.done += 1
            self.failed += outcome.result in ("failed", "conflict")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            logs.status(None)

    def _report(self) -> None:
        started = time.monotonic()
        next_line = started + self.interval
        tick = STATUS_INTERVAL if logs.status_line_enabled() else self.interval
        while not self._stop.wait(max(min(tick, next_line - time.monotonic()), 0.01)):
            with self._lock:
                done, failed = self.done, self.failed
            now = time.monotonic()
            if tick < self.interval and now - started >= 1.0:
                logs.status(f"applying changes: {done}/{self.total} ({now - started:.0f}s)")
            if now >= next_line:
                next_line += self.interval
                logger.bind(done=done, total=self.total, failed=failed).info(
                    "applied {}/{} changes ({} failed or in conflict) after {:.0f}s",
                    done,
                    self.total,
                    failed,
                    now - started,
                )
