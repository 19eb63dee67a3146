"""deploy/clusterset, checked for real: its two ClusterRoles are enough for a member's
passes (create, update, delete, conflicts) and no more than enough (each granted verb is used,
and taking any one away breaks a pass). `east` (the local plane) runs ksm-sync as the
manifest's `ksm-sync`; it reads `west` (the remote plane) as west's `ksm-sync-reader`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ksm_sync.naming import derived_name, mcs_slice_name
from tests.cluster.test_deploy import (
    Grant,
    _token_kubeconfig,
    _wait_until_authorized,
    create_strictly,
    grants,
    manifest,
    rules_without,
)
from tests.support.cli import REPO, run_cli
from tests.support.cluster import Cluster, HttpError, Json, endpoint_slice, service
from tests.support.clusterset import MCS

CLUSTERSET = REPO / "deploy" / "clusterset" / "clusterset.yaml"
WRITER, READER = "ksm-sync-clusterset", "ksm-sync-clusterset-reader"


def role(name: str) -> list[Json]:
    [found] = [d for d in manifest(CLUSTERSET) if d["kind"] == "ClusterRole"
               and d["metadata"]["name"] == name]  # fmt: skip
    return found["rules"]


LOCAL_GRANTS = sorted(grants(role(WRITER)))
REMOTE_GRANTS = sorted(grants(role(READER)))


@dataclass(frozen=True)
class Member:
    """east's ksm-sync, as the manifest's identities, in a test namespace of both planes."""

    east: Cluster
    west: Cluster
    namespace: str
    config: Path
    local_user: str
    remote_user: str

    def run(self) -> tuple[int, dict[str, int], str]:
        done = run_cli(["once", "--config", str(self.config)])
        output = done.stdout + done.stderr
        counts = {}
        for line in output.splitlines():
            if "pass done:" in line:
                counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line)}
        return done.returncode, counts, output


def identity(
    cluster: Cluster, role_name: str, account: str, removed: Grant | None
) -> tuple[str, str]:
    """The manifest's ServiceAccount and its ClusterRole, bound, renamed for this test alone
    (the grants of an earlier test's binding would add up); its user and a token for it from
    the TokenRequest API."""
    suffix = secrets.token_hex(3)
    account = f"{account}-{suffix}"
    docs = manifest(CLUSTERSET)
    namespace = "ksm-sync"
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole"
                        and d["metadata"]["name"] == role_name)  # fmt: skip
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding"
                   and d["roleRef"]["name"] == role_name)  # fmt: skip
    if removed:
        cluster_role["rules"] = rules_without(cluster_role["rules"], removed)
    cluster_role["metadata"]["name"] += f"-{suffix}"
    binding["metadata"]["name"] += f"-{suffix}"
    binding["roleRef"]["name"] = cluster_role["metadata"]["name"]
    binding["subjects"][0]["name"] = account
    for obj in (cluster_role, binding):
        create_strictly(cluster, obj)
    _ensure(cluster, "/api/v1/namespaces", {"metadata": {"name": namespace}})
    _ensure(cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"metadata": {"name": account, "namespace": namespace}})  # fmt: skip
    user = f"system:serviceaccount:{namespace}:{account}"
    _wait_until_authorized(cluster, user, namespace, cluster_role["rules"], cluster_wide=True)
    return user, cluster.service_account_token(namespace, account)


def _ensure(cluster: Cluster, path: str, obj: Json) -> None:
    """Creates obj, unless an earlier test of this worker did."""
    try:
        cluster.request("POST", path, obj)
    except HttpError as error:
        if error.status != 409:
            raise


@pytest.fixture
def member_of(local: Cluster, remote: Cluster, tmp_path: Path) -> Iterator[Callable[..., Member]]:
    """A member in a namespace of its own, deleted afterwards with its exports: the cluster
    set spans every namespace, and the next test's passes must not meet this one's."""
    namespaces: list[str] = []

    def make(local_removed: Grant | None = None, remote_removed: Grant | None = None) -> Member:
        namespace = f"rbac-{secrets.token_hex(4)}"
        namespaces.append(namespace)
        for cluster in (local, remote):
            cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        local_user, local_token = identity(local, WRITER, "ksm-sync", local_removed)
        remote_user, remote_token = identity(remote, READER, "ksm-sync-reader", remote_removed)
        kubeconfig = tmp_path / "east.kubeconfig"
        kubeconfig.write_text(json.dumps(_token_kubeconfig(local, local_token)))
        (tmp_path / "west.token").write_text(remote_token + "\n")
        [configmap] = [d for d in manifest(CLUSTERSET) if d["kind"] == "ConfigMap"]
        config = yaml.safe_load(configmap["data"]["config.yaml"])
        config["local"] = {"kubeconfig": str(kubeconfig)}
        config["remotes"][0].update(
            apiURL=remote.plane.url, tokenPath=str(tmp_path / "west.token"),
            caURL=f"file://{remote.plane.ca_file}",
        )  # fmt: skip
        (tmp_path / "east.yaml").write_text(json.dumps(config))
        return Member(local, remote, namespace, tmp_path / "east.yaml", local_user, remote_user)

    yield make
    for namespace in namespaces:
        for cluster in (local, remote):
            cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


def exported(cluster: Cluster, namespace: str, name: str, ip: str, **spec: object) -> None:
    """A Service, its slice (as a slice controller writes it) and its ServiceExport."""
    cluster.apply(service(namespace, name, labels={}, **spec))
    cluster.apply(endpoint_slice(namespace, name, f"{name}-1",
                                 [{"addresses": [ip], "conditions": {"ready": True}}],
                                 labels={}))  # fmt: skip
    body = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
    cluster.request("POST", f"{MCS}/namespaces/{namespace}/serviceexports", body)


def scenario(m: Member, *, until_broken: bool = False) -> list[tuple[int, dict[str, int], str]]:
    """Pass 1 creates (and sets the conditions of east's own export), pass 2 updates and
    deletes, pass 3 meets three names someone else holds (a ServiceImport, a Service where a
    derived one goes, an EndpointSlice): it reads each (get) and leaves it."""
    ns, passes = m.namespace, []

    def run() -> bool:
        passes.append(m.run())
        return until_broken and not _matches(passes[-1], BASELINE[len(passes) - 1])

    exported(m.west, ns, "web", "10.244.1.10")
    exported(m.west, ns, "db", "10.244.2.10", clusterIP="None")
    exported(m.west, ns, "old", "10.244.3.10")
    exported(m.east, ns, "mine", "10.240.1.10")
    if run():
        return passes

    m.west.apply(service(ns, "web", labels={}, ports=[{"name": "http", "port": 80},
                                                      {"name": "https", "port": 443}]))  # fmt: skip
    m.west.apply(endpoint_slice(ns, "db", "db-1", [
        {"addresses": [ip], "conditions": {"ready": True}} for ip in ("10.244.2.10", "10.244.2.11")
    ], labels={}))  # fmt: skip
    m.west.request("DELETE", f"{MCS}/namespaces/{ns}/serviceexports/old")
    if run():
        return passes

    theirs = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
              "metadata": {"name": "taken", "namespace": ns},
              "spec": {"type": "ClusterSetIP",
                       "ports": [{"port": 1, "protocol": "TCP"}]}}  # fmt: skip
    m.east.request("POST", f"{MCS}/namespaces/{ns}/serviceimports", theirs)
    m.east.create(service(ns, derived_name(ns, "half"), labels={}))
    m.east.create(endpoint_slice(ns, "x", mcs_slice_name("part", "west", "part-1"), [],
                                 labels={}))  # fmt: skip
    for name, ip in (("taken", "10.244.4.10"), ("half", "10.244.5.10"), ("part", "10.244.6.10")):
        exported(m.west, ns, name, ip, clusterIP="None" if name == "part" else None)
    run()
    return passes


BASELINE = [
    (0, {"created": 4}),
    (0, {"updated": 2, "deleted": 1}),
    (1, {"conflicts": 3, "unchanged": 3}),
]


def _matches(got: tuple[int, dict[str, int], str], expected: tuple[int, dict[str, int]]) -> bool:
    code, counts, _ = got
    return code == expected[0] and all(counts.get(k, 0) == v for k, v in expected[1].items())


def _used(cluster: Cluster, user: str) -> set[Grant]:
    """What user did, from the audit log: (group, resource[/subresource], verb)."""
    used = set()
    for event in cluster.audit():
        ref = event.get("objectRef")
        if ref and event.get("user", {}).get("username") == user:  # not the group's discovery
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource")
                                          else "")  # fmt: skip
            used.add((ref.get("apiGroup", ""), resource, event["verb"]))
    return used


def test_the_cluster_set_identities_run_full_passes_and_use_every_verb_granted(
    member_of,
) -> None:
    m = member_of()
    passes = scenario(m)

    for number, (got, expected) in enumerate(zip(passes, BASELINE, strict=True), 1):
        assert _matches(got, expected), f"pass {number}: {got[:2]}\n{got[2]}"
        assert "forbidden" not in got[2], got[2]
    assert _used(m.east, m.local_user) >= set(LOCAL_GRANTS)
    assert _used(m.west, m.remote_user) >= set(REMOTE_GRANTS)
    assert {g for g in _used(m.east, m.local_user) if g[1] != "namespaces" or g[2] == "list"} <= (
        set(LOCAL_GRANTS)
    )


@pytest.mark.parametrize("removed", LOCAL_GRANTS, ids=lambda g: f"{g[1]}-{g[2]}")
def test_a_writer_without_any_one_verb_breaks_a_pass(member_of, removed: Grant) -> None:
    passes = scenario(member_of(local_removed=removed), until_broken=True)
    _assert_broken(passes, removed)


@pytest.mark.parametrize("removed", REMOTE_GRANTS, ids=lambda g: f"{g[1]}-{g[2]}")
def test_a_reader_without_any_one_verb_breaks_the_pass(member_of, removed: Grant) -> None:
    m = member_of(remote_removed=removed)
    exported(m.west, m.namespace, "web", "10.244.1.10")
    code, _, output = m.run()
    assert code == 3 and "remote west not read" in output, output
    _assert_broken([(code, {}, output)], removed)


def _assert_broken(passes: list[tuple[int, dict[str, int], str]], removed: Grant) -> None:
    _, resource, verb = removed
    output = "\n".join(p[2] for p in passes)
    assert f'cannot {verb} resource "{resource}"' in output, output
    assert any(not _matches(p, e) for p, e in zip(passes, BASELINE, strict=False)), [
        p[:2] for p in passes
    ]


def test_the_cluster_set_manifest_is_accepted_as_it_is(local: Cluster) -> None:
    """Every object, unmodified, created with strict validation."""
    for obj in manifest(CLUSTERSET):
        if obj["kind"] == "Namespace":
            _ensure(local, "/api/v1/namespaces", obj)
            continue
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount"):
            obj["metadata"]["name"] += f"-{secrets.token_hex(3)}"  # others made theirs
        create_strictly(local, obj)
