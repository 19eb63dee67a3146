"""The alerts of deploy/monitoring: one set of groups in two files, on metrics that exist.

tests/cluster/test_alerts.py runs promtool on them: that each alert fires and resolves as
it should.
"""

from __future__ import annotations

import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ksm_sync.metrics import Metrics
from tests.support.cli import REPO

MONITORING = REPO / "deploy" / "monitoring"


def test_the_prometheusrule_carries_the_rules_files_groups() -> None:
    rules = yaml.safe_load((MONITORING / "ksm-sync.rules.yaml").read_text())
    resource = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == {"groups": rules["groups"]}


def test_every_metric_an_alert_reads_is_one_ksm_sync_exports() -> None:
    """A renamed metric would leave its alert silently reading nothing."""
    rules = yaml.safe_load((MONITORING / "ksm-sync.rules.yaml").read_text())
    read = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bksm_sync_\w+", rule["expr"])
    }
    metrics = Metrics(
        version="0", prefix="east", mirror_namespace="mirrors", remotes=("east",), resync_period=60
    )
    metrics.last_success.value = 1.0
    metrics.request("local", "local", "list", 200, 0.1)
    exported = {
        sample.name
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    } | {family.name for family in metrics.registry.collect()}
    assert read <= exported, read - exported
