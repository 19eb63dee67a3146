"""The kustomize bases, as a user applies them: rendered by kubectl (built from the same pinned
Kubernetes module as the planes), applied to a real plane, and granting exactly the RBAC the
other tests prove enough and each verb needed (cronjob.yaml's Role and deploy/remote's
ClusterRole: test_deploy.py; the cluster set's: test_clusterset_rbac.py; include-local's here).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cluster.test_deploy import (
    Grant,
    _token_kubeconfig,
    _wait_until_authorized,
    grants,
    manifest,
    rules_without,
)
from tests.support import controlplane
from tests.support.cli import REPO, run_cli
from tests.support.cluster import Cluster, Json, endpoint_slice, service

BASES = {
    ".": "cronjob.yaml, the one-file install",
    "deploy/remote": "each remote's reader",
    "deploy/rbac": "cronjob.yaml's namespace, ServiceAccount and Role",
    "deploy/loop": "loop as a Deployment",
    "deploy/several-remotes": "several remotes in one CronJob",
    "deploy/include-local": "what global.includeLocal needs",
    "deploy/clusterset": "a member of a cluster set",
    "deploy/monitoring": "the alerts, as a PrometheusRule",
}
INCLUDE_LOCAL = REPO / "deploy" / "include-local" / "include-local.yaml"


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(controlplane.binaries()["kubectl"]), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)


def rendered(base: str) -> list[Json]:
    result = kubectl("kustomize", base)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: list[Json], kind: str) -> list[Json]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("base", list(BASES))
def test_every_base_renders_and_applies_to_a_real_plane(base: str, local: Cluster) -> None:
    if base == "deploy/monitoring":  # a PrometheusRule needs the Prometheus Operator's CRD
        crd = controlplane.binaries()[f"{controlplane.PROMETHEUS_RULE_CRD}.yaml"]
        controlplane.install_crds(local.plane, [crd])
    docs = rendered(base)
    assert docs

    applied = kubectl("apply", "-k", base, "--kubeconfig", local.kubeconfig,
                      "--validate=strict", "--server-side", "--force-conflicts")  # fmt: skip

    assert applied.returncode == 0, applied.stderr
    for doc in docs:
        meta = doc["metadata"]
        found = kubectl("get", doc["kind"], meta["name"], "--kubeconfig", local.kubeconfig,
                        *(["-n", meta["namespace"]] if "namespace" in meta else []),
                        "-o", "json")  # fmt: skip
        assert found.returncode == 0, (doc["kind"], meta["name"], found.stderr)


def test_the_one_file_install_is_the_root_base_and_the_copies_of_its_rbac_match_it() -> None:
    """cronjob.yaml is what `kubectl apply -k .` applies; deploy/rbac (which deploy/loop and
    deploy/several-remotes build on, kustomize refusing a base that contains its overlay) is
    its namespace, ServiceAccount, Role and RoleBinding, exactly."""
    one_file = manifest(REPO / "cronjob.yaml")
    assert rendered(".") == one_file
    rbac = [d for d in one_file if d["kind"] != "CronJob"]
    assert rendered("deploy/rbac") == rbac
    for base in ("deploy/loop", "deploy/several-remotes"):
        docs = rendered(base)
        assert [d for d in docs if d["kind"] in ("Namespace", "ServiceAccount", "Role",
                                                 "RoleBinding")] == rbac  # fmt: skip
        assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")


def test_the_other_bases_grant_the_tested_rbac_and_nothing_else() -> None:
    tested = {
        "deploy/remote": manifest(REPO / "deploy" / "remote" / "remote-rbac.yaml"),
        "deploy/clusterset": manifest(REPO / "deploy" / "clusterset" / "clusterset.yaml"),
        "deploy/include-local": manifest(INCLUDE_LOCAL),
    }
    for base, docs in tested.items():
        for kind in ("ClusterRole", "Role"):
            assert sorted(grants(r["rules"]) for r in of_kind(rendered(base), kind)) == sorted(
                grants(r["rules"]) for r in of_kind(docs, kind)
            ), base
    assert rendered("deploy/monitoring")[0]["kind"] == "PrometheusRule"
    loop = of_kind(rendered("deploy/loop"), "Deployment")[0]["spec"]["template"]["spec"]
    assert loop["containers"][0]["args"][0] == "loop"
    assert loop["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"


# --- include-local: enough and no more ---------------------------------------------------

LOCAL_GRANTS = sorted(grants(of_kind(manifest(INCLUDE_LOCAL), "ClusterRole")[0]["rules"]))


def include_local_identity(local: Cluster, mirror_ns: str, removed: Grant | None) -> str:
    """cronjob.yaml's Role in the mirror namespace and include-local's ClusterRole, bound to
    one ServiceAccount of this test; a token for it."""
    suffix = secrets.token_hex(3)
    account = f"ksm-sync-{suffix}"
    local.request("POST", f"/api/v1/namespaces/{mirror_ns}/serviceaccounts",
                  {"metadata": {"name": account}})  # fmt: skip
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": mirror_ns}]
    [role] = of_kind(manifest(REPO / "cronjob.yaml"), "Role")
    [cluster_role] = of_kind(manifest(INCLUDE_LOCAL), "ClusterRole")
    if removed:
        cluster_role["rules"] = rules_without(cluster_role["rules"], removed)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    local.request(
        "POST",
        f"{rbac}/namespaces/{mirror_ns}/roles",
        {**role, "metadata": {"name": account, "namespace": mirror_ns}},
    )
    local.request(
        "POST",
        f"{rbac}/namespaces/{mirror_ns}/rolebindings",
        {
            "metadata": {"name": account, "namespace": mirror_ns},
            "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        },
    )
    local.request("POST", f"{rbac}/clusterroles", {**cluster_role, "metadata": {"name": account}})
    local.request("POST", f"{rbac}/clusterrolebindings", {
        "metadata": {"name": account}, "subjects": subject,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": account}})  # fmt: skip
    user = f"system:serviceaccount:{mirror_ns}:{account}"
    _wait_until_authorized(local, user, mirror_ns, cluster_role["rules"], cluster_wide=True)
    return local.service_account_token(mirror_ns, account)


def include_local_pass(
    local: Cluster, remote: Cluster, tmp_path: Path, removed: Grant | None = None
) -> tuple[int, str, str]:
    """A pass of global services with includeLocal, as that identity; its exit, log, and the
    mirror namespace."""
    mirror_ns = local.create_namespace("mirrors")
    label = f"g{secrets.token_hex(3)}"
    ns = f"{label}-shop"
    for cluster in (local, remote):
        cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        cluster.apply(service(ns, "web", labels={label: "yes"}))
        ip = "10.240.9.9" if cluster is local else "10.244.9.9"
        cluster.apply(endpoint_slice(ns, "web", "web-1",
                                     [{"addresses": [ip], "conditions": {"ready": True}}],
                                     labels={label: "yes"}))  # fmt: skip
    token = include_local_identity(local, mirror_ns, removed)
    kubeconfig = tmp_path / "local.kubeconfig"
    kubeconfig.write_text(json.dumps(_token_kubeconfig(local, token)))
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "mirrorNamespace": mirror_ns, "local": {"kubeconfig": str(kubeconfig)},
        "remotes": [{"name": "a", "prefix": f"{label}a", "labelSelector": f"{label}=none",
                     "kubeconfig": remote.kubeconfig}],
        "global": {"prefix": f"{label}g", "labelSelector": f"{label}=yes", "includeLocal": True},
    }))  # fmt: skip
    done = run_cli(["once", "--config", str(config)])
    return done.returncode, done.stderr, mirror_ns


def test_include_local_is_enough_for_a_pass_that_includes_the_local_cluster(
    local: Cluster, remote: Cluster, tmp_path: Path
) -> None:
    code, log, mirror_ns = include_local_pass(local, remote, tmp_path)
    assert code == 0, log
    slices = local.list(
        "EndpointSlice", mirror_ns, "endpointslice.kubernetes.io/managed-by=ksm-sync"
    )
    assert {s["metadata"]["labels"]["ksm-sync/source-cluster"] for s in slices} == {"a", "local"}


@pytest.mark.parametrize("removed", LOCAL_GRANTS, ids=lambda g: f"{g[1]}-{g[2]}")
def test_include_local_without_any_one_verb_breaks_the_pass(
    local: Cluster, remote: Cluster, tmp_path: Path, removed: Grant
) -> None:
    code, log, _ = include_local_pass(local, remote, tmp_path, removed)
    _, resource, verb = removed
    assert code == 3 and f'cannot {verb} resource "{resource}"' in log, log
