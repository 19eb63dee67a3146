"""The control planes themselves: real API servers that allocate, default and keep apart."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import REPO
from tests.support.cluster import Cluster, HttpError, service


def test_remote_allocates_a_cluster_ip_and_local_knows_nothing_of_it(
    remote: Cluster, local: Cluster
) -> None:
    ns = remote.create_namespace("cp")
    ports = [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090, "targetPort": 9091}]
    remote.create(service(ns, "api", ports=ports))

    stored = remote.get("Service", ns, "api")
    assert stored["spec"]["clusterIP"].startswith("10.96.")
    assert [p["targetPort"] for p in stored["spec"]["ports"]] == [80, 9091]  # defaulted
    try:
        local.get("Service", ns, "api")
    except HttpError as error:
        assert error.status == 404
    else:
        raise AssertionError("the Service exists in local too")


def test_rbac_is_enforced(remote: Cluster) -> None:
    """Authorization mode RBAC: a ServiceAccount's token can do nothing until granted."""
    ns = remote.create_namespace("rbac")
    remote.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "probe", "namespace": ns},
        }
    )
    probe = remote.as_token(remote.service_account_token(ns, "probe"))
    try:
        probe.request("GET", "/api/v1/services")
    except HttpError as error:
        assert error.status == 403
    else:
        raise AssertionError("an unprivileged token listed Services")


def test_clusters_script_up_and_down_leaves_nothing_running(tmp_path) -> None:
    root = tmp_path / "clusters"
    up = subprocess.run(
        [REPO / "scripts" / "clusters", "up", root], capture_output=True, text=True, timeout=300
    )
    assert up.returncode == 0, up.stderr
    assert (root / "remote.kubeconfig").exists() and (root / "local.kubeconfig").exists()
    pids = [
        int((root / n / f"{p}.pid").read_text())
        for n in ("remote", "local")
        for p in ("etcd", "kube-apiserver")
    ]
    again = subprocess.run(
        [REPO / "scripts" / "clusters", "up", root], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "ready in" in again.stdout  # idempotent: reuses them
    assert pids == [
        int((root / n / f"{p}.pid").read_text())
        for n in ("remote", "local")
        for p in ("etcd", "kube-apiserver")
    ]

    down = subprocess.run(
        [REPO / "scripts" / "clusters", "down", root], capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 0, down.stderr
    assert not root.exists()
    for pid in pids:
        assert not _running(pid)
    assert subprocess.run([REPO / "scripts" / "clusters", "down", root], timeout=60).returncode == 0


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status
