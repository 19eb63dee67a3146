"""The Multi-Cluster Services API between two members, through the real CLI, both directions.

`east` is the `local` plane (IPv4), `west` the `remote` plane (dual-stack); each member's
ksm-sync writes its own cluster only. Real workloads, made into pods and slices by each
cluster's own controllers; answers asked of a real CoreDNS serving what `ksm-sync corefile
--config` prints for the cluster set (the stock kubernetes plugin, `multicluster`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import controlplane, workloads
from tests.support.cli import run_cli
from tests.support.cluster import Cluster, service
from tests.support.clusterset import MCS, MEMBERS, SetWorld
from tests.support.observability import free_port
from tests.support.resolver import Resolver, addresses, answers_with, nxdomain, rcode, records


@pytest.fixture
def world(local: Cluster, remote: Cluster, tmp_path: Path) -> Iterator[SetWorld]:
    created = SetWorld.new(local, remote, tmp_path)
    try:
        yield created
    finally:
        created.clean()


def resolver_of(world: SetWorld, member: str) -> Resolver:
    """The worker's CoreDNS, restarted for member's cluster with its corefile --config."""
    plane = world.cluster(member).plane
    address = controlplane.dns(plane.dir.parent, config=world.config(member), plane=plane.name,
                               die_with_parent=True)  # fmt: skip
    host, port = address.rsplit(":", 1)
    return Resolver(host, int(port), "clusterset.local")


def web(world: SetWorld, member: str, replicas: int = 2, **spec: object) -> dict[str, str]:
    """A Deployment and its Service `web` in member's cluster; its ready pods' IPs by name."""
    cluster = world.cluster(member)
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    cluster.apply(service(world.namespace, "web", labels={"app": "web"}, ports=ports,
                          selector={"app": "web"}, **spec))  # fmt: skip
    workloads.deployment(cluster, world.namespace, "web", replicas)
    ips = workloads.ready_pods(cluster, world.namespace, "web", replicas)
    workloads.wait_slices(cluster, world.namespace, "web", set(ips.values()))
    return ips


def test_a_clusterset_ip_export_is_imported_by_every_member_and_goes_when_unexported(
    world: SetWorld,
) -> None:
    pods = web(world, "west")
    world.export("west", "web")

    world.sync()

    for member in MEMBERS:
        imported = world.service_import(member, "web")
        assert imported is not None, member
        spec, status = imported["spec"], imported["status"]
        assert spec["type"] == "ClusterSetIP"
        assert [(p["name"], p["port"]) for p in spec["ports"]] == [("http", 80)]
        assert status["clusters"] == [{"cluster": "west"}]
        derived_name = imported["metadata"]["annotations"][
            "multicluster.kubernetes.io/derived-service"
        ]
        derived = world.cluster(member).get("Service", world.namespace, derived_name)
        assert spec["ips"] == derived["spec"]["clusterIPs"] and spec["ips"]
        assert spec["ipFamilies"] == derived["spec"]["ipFamilies"]
        [mcs] = [s for s in world.mcs_slices(member, "web") if s["addressType"] == "IPv4"]
        labels = mcs["metadata"]["labels"]
        assert labels["multicluster.kubernetes.io/source-cluster"] == "west"
        assert labels["kubernetes.io/service-name"] == derived_name
        assert labels["endpointslice.kubernetes.io/managed-by"] == "ksm-sync"
        assert {a for e in mcs["endpoints"] for a in e["addresses"]} == set(pods.values())
    assert world.conditions("west", "web") == {
        "Valid": ("True", "Valid"), "Ready": ("True", "Exported"),
        "Conflict": ("False", "NoConflicts"),
    }  # fmt: skip
    # The exporting cluster's own Service stays its own: no slice of the set names it.
    own = world.west.list("EndpointSlice", world.namespace, "kubernetes.io/service-name=web")
    assert {s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] for s in own} == {
        "endpointslice-controller.k8s.io"
    }

    world.unexport("west", "web")
    world.sync()

    for member in MEMBERS:
        assert world.service_import(member, "web") is None
        assert world.mcs_slices(member, "web") == []
        assert world.cluster(member).list("Service", world.namespace, "ksm-sync/cluster-set") == []


def test_zero_writes_at_rest_and_a_dry_run_shows_the_plan_and_writes_nothing(
    world: SetWorld,
) -> None:
    web(world, "west")
    world.export("west", "web")
    for member in MEMBERS:
        dry = world.run(member, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"+ create ServiceImport web (remote {world.namespace}/web)" in dry.stdout
        assert world.writes(member) == []
    world.sync()
    marks = {m: len(world.writes(m)) for m in MEMBERS}

    for member in MEMBERS:
        again = world.run(member)
        assert again.returncode == 0 and "created=0 updated=0" in again.stderr, again.stderr

    assert {m: len(world.writes(m)) for m in MEMBERS} == marks


def test_a_headless_export_answers_every_ready_pod_of_every_exporting_member(
    world: SetWorld,
) -> None:
    east_pods = web(world, "east", clusterIP="None")
    west_pods = web(world, "west", clusterIP="None")
    for member in MEMBERS:
        world.export(member, "web")
    world.sync()
    imported = world.service_import("east", "web")
    assert imported["spec"]["type"] == "Headless" and not imported["spec"].get("ips")
    assert imported["status"]["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]
    resolver = resolver_of(world, "east")
    name = resolver.name("web", world.namespace)

    resolver.wait(name, "A", answers_with(set(east_pods.values()) | set(west_pods.values())))

    # cluster.local keeps answering east's own pods only
    local = f"web.{world.namespace}.svc.cluster.local"
    assert addresses(resolver.ask(local)) == set(east_pods.values())
    world.unexport("east", "web")
    world.unexport("west", "web")
    world.sync()
    resolver.wait(name, "A", nxdomain)


def test_a_clusterset_ip_answers_its_ips_srv_and_per_pod_names(world: SetWorld) -> None:
    cluster = world.west
    ports = [{"name": "pg", "port": 5432}]
    cluster.apply(service(world.namespace, "db", labels={"app": "db"}, clusterIP="None",
                          ports=ports, selector={"app": "db"}))  # fmt: skip
    workloads.statefulset(cluster, world.namespace, "db", 2)
    db = workloads.ready_pods(cluster, world.namespace, "db", 2)
    workloads.wait_slices(cluster, world.namespace, "db", set(db.values()))
    web(world, "west")
    world.export("west", "web")
    world.export("west", "db")
    world.sync()
    resolver = resolver_of(world, "east")
    ips = world.service_import("east", "web")["spec"]["ips"]

    resolver.wait(resolver.name("web", world.namespace), "A", answers_with(set(ips)))
    srv = resolver.wait(f"_http._tcp.{resolver.name('web', world.namespace)}", "SRV",
                        lambda a: rcode(a) == "NOERROR" and bool(records(a, "SRV")))  # fmt: skip
    [rrset] = records(srv, "SRV")
    assert {(r.port, str(r.target)) for r in rrset} == {
        (80, f"{resolver.name('web', world.namespace)}.")
    }
    for pod, ip in db.items():
        per_pod = resolver.name(pod, "west", "db", world.namespace)
        resolver.wait(per_pod, "A", answers_with({ip}))
    assert nxdomain(resolver.ask(resolver.name("db-0", "east", "db", world.namespace)))


def test_aaaa_answers_the_ipv6_of_a_dual_stack_import(world: SetWorld) -> None:
    """west, dual-stack, imports east's dual-stack-minded Service with both of its own
    families when the winner has two: here west exports a PreferDualStack Service itself."""
    web(world, "west", ipFamilyPolicy="PreferDualStack")
    world.export("west", "web")
    world.sync()
    imported = world.service_import("west", "web")
    families = imported["spec"]["ipFamilies"]
    assert families == ["IPv4", "IPv6"], imported["spec"]
    v6 = {ip for ip in imported["spec"]["ips"] if ipaddress.ip_address(ip).version == 6}
    assert world.service_import("east", "web")["spec"]["ipFamilies"] == ["IPv4"]
    resolver = resolver_of(world, "west")

    resolver.wait(resolver.name("web", world.namespace), "AAAA", answers_with(v6))


def test_ports_are_the_union_and_both_exports_report_the_conflict(world: SetWorld) -> None:
    web(world, "west")  # the older export: http 80
    world.export("west", "web")
    world.sync()
    cluster = world.east
    ports = [{"name": "http", "port": 81}, {"name": "admin", "port": 9000}]
    cluster.apply(service(world.namespace, "web", labels={"app": "web"}, ports=ports,
                          selector={"app": "web"}))  # fmt: skip
    world.export("east", "web")

    world.sync()
    world.sync()  # each member writes its own export's conditions from what the other has

    for member in MEMBERS:
        spec = world.service_import(member, "web")["spec"]
        assert sorted((p["name"], p["port"]) for p in spec["ports"]) == [
            ("admin", 9000), ("http", 80)
        ]  # fmt: skip
        assert world.conditions(member, "web")["Conflict"] == ("True", "PortConflict")


def test_an_external_name_export_is_not_valid_and_imports_nothing(world: SetWorld) -> None:
    world.west.apply(service(world.namespace, "ext", type="ExternalName",
                             externalName="db.example.com", ports=[]))  # fmt: skip
    world.export("west", "ext")
    world.export("west", "missing")

    world.sync()

    assert world.conditions("west", "ext")["Valid"] == ("False", "InvalidServiceType")
    assert world.conditions("west", "missing")["Valid"] == ("False", "NoService")
    for member in MEMBERS:
        assert world.service_import(member, "ext") is None
        assert world.service_import(member, "missing") is None


def test_affinity_traffic_policy_and_distribution_come_from_the_winner(world: SetWorld) -> None:
    web(world, "west", sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        internalTrafficPolicy="Local", trafficDistribution="PreferClose")  # fmt: skip
    world.export("west", "web")
    world.sync()
    spec = world.service_import("east", "web")["spec"]
    assert spec["sessionAffinity"] == "ClientIP"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 60}}
    assert (spec["internalTrafficPolicy"], spec["trafficDistribution"]) == ("Local", "PreferClose")
    derived = world.east.get("Service", world.namespace,
                             world.service_import("east", "web")["metadata"]["annotations"][
                                 "multicluster.kubernetes.io/derived-service"])  # fmt: skip
    assert derived["spec"]["sessionAffinity"] == "ClientIP"


def test_a_namespace_a_member_lacks_is_never_created_there(world: SetWorld) -> None:
    only_west = f"{world.namespace}-w"
    world.west.request("POST", "/api/v1/namespaces", {"metadata": {"name": only_west}})
    try:
        world.west.apply(service(only_west, "web", ports=[{"name": "http", "port": 80}]))
        path = f"{MCS}/namespaces/{only_west}/serviceexports"
        world.west.request(
            "POST",
            path,
            {
                "apiVersion": "multicluster.x-k8s.io/v1beta1",
                "kind": "ServiceExport",
                "metadata": {"name": "web", "namespace": only_west},
            },
        )

        result = world.run("east")

        assert result.returncode == 0, result.stderr
        assert f"has no namespace {only_west}" in result.stderr and "absent=1" in result.stderr
        names = {n["metadata"]["name"] for n in world.east.request("GET", "/api/v1/namespaces")[
            "items"]}  # fmt: skip
        assert only_west not in names
    finally:
        world.west.request("DELETE", f"/api/v1/namespaces/{only_west}")  # and its export


def test_an_import_name_held_by_someone_else_is_a_conflict_left_untouched(
    world: SetWorld,
) -> None:
    theirs = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
              "metadata": {"name": "web", "namespace": world.namespace},
              "spec": {"type": "ClusterSetIP",
                       "ports": [{"port": 1, "protocol": "TCP"}]}}  # fmt: skip
    world.east.request("POST", f"{MCS}/namespaces/{world.namespace}/serviceimports", theirs)
    web(world, "west")
    world.export("west", "web")

    result = world.run("east")

    assert result.returncode == 1 and "conflict on ServiceImport web" in result.stderr
    kept = world.service_import("east", "web")
    assert kept["spec"]["ports"] == [{"port": 1, "protocol": "TCP"}]
    assert "ksm-sync/cluster-set" not in (kept["metadata"].get("labels") or {})
    world.east.request("DELETE", f"{MCS}/namespaces/{world.namespace}/serviceimports/web")


def test_a_member_that_cannot_be_read_keeps_its_contribution_for_its_time(
    world: SetWorld, tmp_path: Path
) -> None:
    pods = web(world, "west", clusterIP="None")
    world.export("west", "web")
    world.sync()
    away = json.loads(world.config("east").read_text())
    dead = json.loads(Path(world.west.kubeconfig).read_text())
    dead["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    (tmp_path / "dead.kubeconfig").write_text(json.dumps(dead))
    away["remotes"][0]["kubeconfig"] = str(tmp_path / "dead.kubeconfig")
    world.config("east").write_text(json.dumps(away))
    resolver = resolver_of(world, "east")
    name = resolver.name("web", world.namespace)
    resolver.wait(name, "A", answers_with(set(pods.values())))

    result = world.run("east", "--request-timeout", "1s")

    assert result.returncode == 3 and "remote west not read" in result.stderr, result.stderr
    imported = world.service_import("east", "web")
    assert imported["status"]["clusters"] == [{"cluster": "west"}]
    assert "west" in imported["metadata"]["annotations"]["ksm-sync/unreachable-since"]
    assert addresses(resolver.ask(name)) == set(pods.values())
    world.write_config("east")


def test_the_corefile_of_a_cluster_set_and_a_config_file_that_is_only_that(
    world: SetWorld,
) -> None:
    result = run_cli(["corefile", "--config", str(world.config("east"))])
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "clusterset.local {\n    errors\n    kubernetes clusterset.local {\n"
        "        multicluster clusterset.local\n        labels ksm-sync/cluster-set=east\n"
        "    }\n}\n"
    )


def test_changes_in_the_exporting_member_reach_every_import(world: SetWorld) -> None:
    """Pods scaled, a port added, then the Service turned headless: each pass brings every
    member's import, derived Service and slices to the exporter's state."""
    pods = web(world, "west")
    world.export("west", "web")
    world.sync()
    resolver = resolver_of(world, "east")
    name = resolver.name("web", world.namespace)
    resolver.wait(name, "A", answers_with(set(world.service_import("east", "web")["spec"]["ips"])))

    workloads.scale(world.west, world.namespace, "deployments", "web", 3)
    pods = workloads.ready_pods(world.west, world.namespace, "web", 3)
    workloads.wait_slices(world.west, world.namespace, "web", set(pods.values()))
    ports = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]
    world.west.apply(service(world.namespace, "web", labels={"app": "web"}, ports=ports,
                             selector={"app": "web"}))  # fmt: skip
    world.sync()

    for member in MEMBERS:
        spec = world.service_import(member, "web")["spec"]
        assert sorted(p["port"] for p in spec["ports"]) == [80, 443]
        found = {a for s in world.mcs_slices(member, "web") for e in s["endpoints"]
                 for a in e["addresses"]}  # fmt: skip
        assert found == set(pods.values())

    world.west.delete("Service", world.namespace, "web")
    world.west.apply(service(world.namespace, "web", labels={"app": "web"}, ports=ports,
                             selector={"app": "web"}, clusterIP="None"))  # fmt: skip
    workloads.wait_slices(world.west, world.namespace, "web", set(pods.values()))
    world.sync()

    for member in MEMBERS:
        imported = world.service_import(member, "web")
        assert imported["spec"]["type"] == "Headless" and not imported["spec"].get("ips")
        assert world.cluster(member).list("Service", world.namespace, "ksm-sync/cluster-set") == []
    resolver.wait(name, "A", answers_with(set(pods.values())))
