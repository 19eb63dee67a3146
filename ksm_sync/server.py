"""`loop`'s HTTP endpoints: /metrics, /healthz (process alive), /readyz (mirrors are current).

A small threaded http.server: three read-only endpoints need no framework. Readiness
follows the passes: ready after a pass that ran and wrote all it planned (skips,
conflicts and a tripped deletion guard allowed: retrying cannot fix those), unready after
one that could not run or failed writes, or when the last good pass is too old.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST

from ksm_sync.errors import Unavailable, UsageError
from ksm_sync.metrics import Metrics
from ksm_sync.report import Report

STALE_PERIODS = 3  # a good pass older than this many resync periods (+ a pass timeout) is stale


def parse_address(value: str) -> tuple[str, int]:
    """Go's listen syntax: `:8080` (every interface), `host:8080`, `[::1]:8080`."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(
            f"--listen-address (KSM_LISTEN_ADDRESS) {value!r} is not host:port or :port"
        )
    return host.removeprefix("[").removesuffix("]"), int(port)


@dataclass
class Health:
    """Readiness from the latest passes; `max_age` bounds how old the last good one may be."""

    max_age: float
    last_report: Report | None = None
    last_success: float | None = None  # monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, report: Report) -> None:
        with self._lock:
            self.last_report = report
            if report.succeeded:
                self.last_success = time.monotonic()

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            report, success = self.last_report, self.last_success
        if report is None:
            return False, "no pass has finished yet"
        if not report.succeeded:
            failed, abandoned = report.counts.get("failed", 0), report.counts.get("abandoned", 0)
            why = (
                report.error
                or report.stopped
                or f"{failed} mirrors failed"
                + (f", {abandoned} not attempted" if abandoned else "")
            )
            return False, f"the last pass did not succeed: {why}"
        assert success is not None
        age = time.monotonic() - success
        if age > self.max_age:
            return False, f"the last good pass ended {age:.0f}s ago (limit {self.max_age:.0f}s)"
        return True, f"the last pass succeeded {age:.0f}s ago"


class Server:
    """Serves the endpoints on a daemon thread until `stop`."""

    def __init__(self, address: str, metrics: Metrics, health: Health) -> None:
        host, port = parse_address(address)
        self.health = health  # what each pass records, and /readyz answers from
        handler = _handler(metrics, health)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise Unavailable(
                f"--listen-address {address}: cannot serve /metrics, /healthz and /readyz "
                f"({error.strerror}); give another address, or '' to serve nothing"
            ) from None
        self.httpd.daemon_threads = True
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.bind(listen_address=self.address).info(
            "serving /metrics, /healthz and /readyz on {}", self.address
        )

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


def _handler(metrics: Metrics, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ksm-sync"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok, why = health.ready()
                self._send(200 if ok else 503, f"{'ok' if ok else 'not ready'}: {why}\n".encode())
            else:
                self._send(404, b"not found: /metrics, /healthz, /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the pass logs

    return Handler
