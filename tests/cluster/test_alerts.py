"""deploy/monitoring with the real tools: promtool checks the rules and runs their unit tests
(ksm-sync.rules.test.yaml: each alert fires, stays quiet, and resolves after recovery), and
kubectl renders the kustomize base as `kubectl apply -k` would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support import controlplane
from tests.support.cli import REPO

MONITORING = REPO / "deploy" / "monitoring"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=MONITORING)


def test_promtool_accepts_the_rules() -> None:
    done = _run(str(controlplane.binaries()["promtool"]), "check", "rules", "ksm-sync.rules.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout, done.stdout


def test_the_alerts_fire_and_resolve_as_their_unit_tests_say() -> None:
    promtool = str(controlplane.binaries()["promtool"])
    done = _run(promtool, "test", "rules", "ksm-sync.rules.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_promtool_fails_an_alert_that_does_not_fire_as_tested(tmp_path: Path) -> None:
    """So that the test above cannot pass because promtool checks nothing."""
    rules = (MONITORING / "ksm-sync.rules.yaml").read_text()
    (tmp_path / "ksm-sync.rules.yaml").write_text(
        rules.replace("ksm_sync_remote_up == 0", "ksm_sync_remote_up == 2")
    )
    tests = (MONITORING / "ksm-sync.rules.test.yaml").read_text()
    (tmp_path / "ksm-sync.rules.test.yaml").write_text(tests)
    done = subprocess.run(
        [str(controlplane.binaries()["promtool"]), "test", "rules", "ksm-sync.rules.test.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode != 0 and "KsmSyncRemoteNotRead" in done.stdout + done.stderr


def test_kubectl_renders_the_base_as_the_prometheusrule_file() -> None:
    done = _run(str(controlplane.binaries()["kubectl"]), "kustomize", ".")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == yaml.safe_load(
        (MONITORING / "prometheusrule.yaml").read_text()
    )
