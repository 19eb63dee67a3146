"""Prometheus metrics of a run: what the passes did, what the API servers answered.

The figures live on a registry of their own, so that `once` can push or write exactly
them (no process or platform collectors) and tests can build several without clashes.
Counters describe this process; the `last_pass_*` gauges describe the latest pass, which
is what a CronJob's pushed or written metrics can be alerted on.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from loguru import logger
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
    pushadd_to_gateway,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ksm_sync.report import FIELDS, OCCASIONAL, RESULTS, Report, wrote_all

# Report counts -> ksm_sync_changes_total kinds (counted per mirror, as in the summary).
CHANGE_KINDS = {
    "created": "created",
    "updated": "updated",
    "recreated": "recreated",
    "deleted": "deleted",
    "conflicts": "conflict",
    "skipped": "skipped",
    "failed": "failed",
    "abandoned": "abandoned",
}
PASS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
LAST_SUCCESS = "ksm_sync_last_success_timestamp_seconds"
PUSH_JOB = "ksm-sync"


class _LastSuccess(Collector):
    """Absent until a pass succeeds, so a failed CronJob run never pushes a zero over it."""

    def __init__(self) -> None:
        self.value: float | None = None

    def collect(self) -> Iterator[Metric]:
        if self.value is not None:
            yield GaugeMetricFamily(
                LAST_SUCCESS,
                "Unix time the last pass ended that ran and wrote everything it planned "
                "(skips, conflicts and a tripped deletion guard allowed).",
                value=self.value,
            )


class Metrics:
    """Every ksm_sync_ metric; `request` and `retry` are the hooks kube.Kube calls."""

    def __init__(
        self,
        *,
        version: str,
        prefix: str,
        mirror_namespace: str,
        remotes: tuple[str, ...],
        resync_period: float | None = None,
    ) -> None:
        """prefix: the prefixes, comma-separated; remotes: the remotes' names (and "global"
        when global services are mirrored): the `remote` label of the per-remote series;
        resync_period: `loop`'s, to set pass durations against."""
        disable_created_metrics()  # no *_created series: noise in textfiles and pushes
        self.prefix, self.mirror_namespace = prefix, mirror_namespace
        self.registry = r = CollectorRegistry()
        self.passes = Counter(
            "ksm_sync_passes",
            "Passes run, by result: success (exit 0), "
            "partial (exit 1), error (exit 3: could not run).",
            ["result"],
            registry=r,
        )
        self.pass_duration = Histogram(
            "ksm_sync_pass_duration_seconds",
            "Duration of passes.",
            buckets=PASS_BUCKETS,
            registry=r,
        )
        self.changes = Counter(
            "ksm_sync_changes",
            "Mirrors by what a pass did to them (dry runs not counted), by remote.",
            ["remote", "kind"],
            registry=r,
        )
        self.remote_up = Gauge(
            "ksm_sync_remote_up",
            "1 when the last pass read the remote whole; 0 when it could not (its mirrors were "
            "left as they were).",
            ["remote"],
            registry=r,
        )
        self.remote_success = Gauge(
            "ksm_sync_remote_last_success_timestamp_seconds",
            "Unix time the last pass ended that read the remote and wrote all it planned for it.",
            ["remote"],
            registry=r,
        )
        self.objects = Gauge(
            "ksm_sync_objects",
            "Objects the last pass observed: remote (selected) and local (this prefix's mirrors).",
            ["side", "kind"],
            registry=r,
        )
        self.requests = Counter(
            "ksm_sync_api_requests",
            "API requests, by code (0: no HTTP answer); cluster: local, or the remote's name.",
            ["side", "cluster", "verb", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "ksm_sync_api_request_duration_seconds",
            "API request latency.",
            ["side", "cluster", "verb"],
            registry=r,
        )
        self.retries = Counter(
            "ksm_sync_retries",
            "API requests retried after a transient failure.",
            ["side", "cluster"],
            registry=r,
        )
        # Not labelled `prefix`: a Pushgateway gives every pushed series the grouping key's
        # labels, which would overwrite it, and reject a push with two retired prefixes.
        self.retired = Gauge(
            "ksm_sync_retired_mirrors",
            "Mirrors in the mirror namespace of a prefix the --config file no longer has (a "
            "remote dropped from it), by retired prefix, as the last pass that ran found them "
            '(retired_prefix="": none).',
            ["retired_prefix"],
            registry=r,
        )
        self.guard = Gauge(
            "ksm_sync_deletion_guard_tripped",
            "1 when the last pass that ran held deletes back (--max-delete-ratio).",
            registry=r,
        )
        self.last_exit = Gauge(
            "ksm_sync_last_pass_exit_code",
            "Exit status of the last pass: 0 all mirrored, 1 trouble, 3 could not run.",
            registry=r,
        )
        self.last_changes = Gauge(
            "ksm_sync_last_pass_changes",
            "Mirrors by what the last pass that ran did (or, dry run, planned) to them, by remote.",
            ["remote", "kind"],
            registry=r,
        )
        if resync_period is not None:
            Gauge(
                "ksm_sync_resync_period_seconds",
                "loop's --resync-period: passes start this far apart, or at once after a "
                "pass that took longer.",
                registry=r,
            ).set(resync_period)
        self.last_success = _LastSuccess()
        r.register(self.last_success)
        info = Info("ksm_sync", "Version and settings of this ksm-sync.", registry=r)
        info.info({"version": version, "prefix": prefix, "mirror_namespace": mirror_namespace})
        for result in RESULTS:  # series exist at 0 from the start: rate() works
            self.passes.labels(result)
        self.retries.labels("local", "local")
        for remote in remotes:
            for kind in CHANGE_KINDS.values():
                self.changes.labels(remote, kind)
            self.retries.labels("remote", remote)

    def request(self, side: str, cluster: str, verb: str, status: int, seconds: float) -> None:
        """kube.RequestObserver: one API request."""
        self.requests.labels(side, cluster, verb, str(status)).inc()
        self.request_duration.labels(side, cluster, verb).observe(seconds)

    def retry(self, side: str, cluster: str) -> None:
        """One retry of a request to that cluster."""
        self.retries.labels(side, cluster).inc()

    def record(self, report: Report) -> None:
        """A finished pass."""
        self.passes.labels(report.result).inc()
        self.pass_duration.observe(report.duration)
        self.last_exit.set(report.exit_code)
        for remote in report.remote_errors:
            self.remote_up.labels(remote).set(0)
        if report.error is not None or report.stopped is not None:
            return
        for key, value in report.objects.items():
            side, kind = key.split("_", 1)
            self.objects.labels(side, kind).set(value)
        self.guard.set(1 if report.guard else 0)
        self.retired.clear()
        for prefix, count in report.retired.items():
            self.retired.labels(prefix).set(count)
        if not report.retired:  # a sample: a Pushgateway keeps a family that a push lacks
            self.retired.labels("").set(0)
        for remote in report.read:
            self.remote_up.labels(remote).set(1)
        for remote, counts in report.by_remote.items():
            self.remote_up.labels(remote).set(1)
            for key in (*FIELDS, *OCCASIONAL):
                kind = CHANGE_KINDS.get(key, key)
                self.last_changes.labels(remote, kind).set(counts.get(key, 0))
            if report.dry_run:
                continue
            for key, kind in CHANGE_KINDS.items():
                self.changes.labels(remote, kind).inc(counts.get(key, 0))
            if wrote_all(counts):
                self.remote_success.labels(remote).set(time.time())
        if report.succeeded and not report.dry_run:
            self.last_success.value = time.time()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def write_file(self, path: str | Path) -> None:
        """Writes the text format atomically, for node-exporter's textfile collector.

        A run without success keeps the last-success time of the file it replaces, so
        the "no successful pass for N minutes" alert measures from the last real one.
        """
        path = Path(path)
        if self.last_success.value is None:
            self.last_success.value = _previous_success(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.exposition())
            os.chmod(tmp, 0o644)  # node-exporter runs as another user
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @property
    def grouping_key(self) -> dict[str, str]:
        """The Pushgateway group of this run's pushes: apart from other ksm-syncs'."""
        return {"prefix": self.prefix, "mirror_namespace": self.mirror_namespace}

    def push(self, url: str, *, timeout: float = 10.0) -> None:
        """Pushes to a Pushgateway; POST (pushadd) keeps a previously pushed last success."""
        pushadd_to_gateway(
            url,
            job=PUSH_JOB,
            registry=self.registry,
            grouping_key=self.grouping_key,
            timeout=timeout,
        )


def _previous_success(path: Path) -> float | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            if family.name == LAST_SUCCESS and family.samples:
                return family.samples[0].value
    except ValueError:
        return None
    return None


def export(metrics: Metrics, *, metrics_file: str | None, pushgateway_url: str | None) -> None:
    """Writes and pushes after a pass; a failure is logged, never the pass's exit status."""
    if metrics_file:
        try:
            metrics.write_file(metrics_file)
        except OSError as error:
            logger.error("--metrics-file {}: cannot write the metrics ({})", metrics_file, error)
    if pushgateway_url:
        try:
            metrics.push(pushgateway_url)
        except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
            logger.error(
                "--pushgateway-url {}: cannot push the metrics ({})", pushgateway_url, error
            )
