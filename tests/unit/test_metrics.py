"""What a CronJob pushes: every series valid in its Pushgateway group, and no family that a
recovered pass would leave to its stale samples.

A Pushgateway gives each pushed series the labels of its grouping key (a series holding one of
them with another value is overwritten, two such series make the push invalid: 400), and a
POST replaces only the families the push has samples of.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ksm_sync.metrics import Metrics
from ksm_sync.report import Report


def _metrics() -> Metrics:
    return Metrics(
        version="0", prefix="east,west", mirror_namespace="mirrors", remotes=("east", "west")
    )


def _samples(metrics: Metrics) -> list[Sample]:
    text = metrics.exposition().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _passed(**kwargs: object) -> Report:
    counts = {"created": 1}
    return Report(counts=counts, by_remote={"east": counts, "west": counts}, **kwargs)


def test_no_series_holds_a_grouping_label_with_another_value() -> None:
    metrics = _metrics()
    metrics.record(_passed(retired={"north": 12, "south": 3}))
    key = metrics.grouping_key
    clashes = [s for s in _samples(metrics) if any(s.labels.get(k, v) != v for k, v in key.items())]
    assert not clashes
    retired = [s for s in _samples(metrics) if s.name == "ksm_sync_retired_mirrors"]
    assert {s.labels["retired_prefix"]: s.value for s in retired} == {"north": 12, "south": 3}


def test_a_pass_without_retired_prefixes_pushes_a_sample_that_replaces_theirs() -> None:
    metrics = _metrics()
    metrics.record(_passed(retired={"north": 12}))
    metrics.record(_passed())
    retired = [s for s in _samples(metrics) if s.name == "ksm_sync_retired_mirrors"]
    assert [(s.labels, s.value) for s in retired] == [({"retired_prefix": ""}, 0)]


def test_every_gauge_of_the_last_pass_has_samples_after_a_pass_that_ran() -> None:
    """So that a POST of a recovered pass replaces the old samples of each (the alerts of
    deploy/monitoring read them)."""
    metrics = _metrics()
    metrics.record(_passed())
    names = {s.name for s in _samples(metrics)}
    read = {
        "ksm_sync_last_success_timestamp_seconds",
        "ksm_sync_last_pass_exit_code",
        "ksm_sync_last_pass_changes",
        "ksm_sync_deletion_guard_tripped",
        "ksm_sync_remote_up",
        "ksm_sync_retired_mirrors",
    }
    assert read <= names, read - names
