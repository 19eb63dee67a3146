"""What ksm-sync is for: a local pod asks for `<svc>.<ns>.svc.cluster.<prefix>` and gets the
remote's answer. Real workloads on `remote` (their pods made by its controllers and kwok), a real
pass of the CLI, then a real DNS client asks a real CoreDNS serving the block of
`ksm-sync corefile` from the `local` plane.
"""

from __future__ import annotations

import pytest

from tests.support import controlplane, workloads
from tests.support.cluster import Cluster
from tests.support.resolver import (
    Resolver,
    addresses,
    answers_with,
    asked,
    names,
    nxdomain,
    rcode,
    records,
)
from tests.support.world import World


@pytest.fixture
def world(remote: Cluster, local: Cluster) -> World:
    """ksm-sync in its default mode, slices, on a local plane without EndpointSliceMirroring:
    only the slices ksm-sync writes can answer."""
    return World.new(remote, local, endpoints_api="endpointslices")


@pytest.fixture
def resolver(world: World) -> Resolver:
    """The worker's CoreDNS, restarted to serve this world's prefix and mirror namespace."""
    root = world.local.plane.dir.parent
    address = controlplane.dns(
        root, svc_prefix=world.prefix, mirror_ns=world.mirror_ns, die_with_parent=True
    )
    host, port = address.rsplit(":", 1)
    return Resolver(host, int(port), f"cluster.{world.prefix}")


def sync(world: World) -> None:
    result = world.run()
    assert result.returncode == 0, result.stderr


def running(
    world: World, kind: str, name: str, replicas: int, namespace: str = ""
) -> dict[str, str]:
    """A Deployment or StatefulSet of name on remote; the IPs of its ready pods by name, once
    the endpoints controller has published them."""
    ns = namespace or world.remote_ns
    create = workloads.deployment if kind == "deployment" else workloads.statefulset
    create(world.remote, ns, name, replicas)
    return published(world, name, replicas, ns)


def published(world: World, name: str, replicas: int, namespace: str = "") -> dict[str, str]:
    ns = namespace or world.remote_ns
    ips = workloads.ready_pods(world.remote, ns, name, replicas)
    workloads.wait_endpoints(world.remote, ns, name, set(ips.values()))
    return ips


def test_a_deployment_behind_a_cluster_ip_service(world: World, resolver: Resolver) -> None:
    world.service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80}])
    running(world, "deployment", "web", 2)
    sync(world)
    mirror = world.local.get("Service", world.mirror_ns, world.mirror_name("web"))
    cluster_ip = mirror["spec"]["clusterIP"]
    name = resolver.name("web", world.remote_ns)

    answer = resolver.wait(name, "A", answers_with({cluster_ip}))
    assert names(answer) == {name}
    assert addresses(resolver.ask(name, "A", tcp=True)) == {cluster_ip}
    no_aaaa = resolver.ask(name, "AAAA")  # an IPv4 service: no data, and the zone asked
    assert rcode(no_aaaa) == "NOERROR" and not no_aaaa.answer
    assert names(no_aaaa) == {resolver.domain}

    srv = resolver.ask(f"_http._tcp.{name}", "SRV")
    [rrset] = records(srv, "SRV")
    assert rrset.name == asked(srv)
    assert [(r.port, r.target.to_text()) for r in rrset] == [(80, f"{name}.")]
    assert addresses(srv) == set() and names(srv) == {f"_http._tcp.{name}", name}
    assert {r.address for rrset in srv.additional for r in rrset} == {cluster_ip}


def test_a_statefulset_behind_a_headless_service(world: World, resolver: Resolver) -> None:
    """The ready pods by the Service's name, each pod by its own, SRV targets per pod."""
    world.service(
        "pg", clusterIP="None", selector={"app": "pg"}, ports=[{"name": "pg", "port": 5432}]
    )
    pods = running(world, "statefulset", "pg", 2)
    sync(world)
    name = resolver.name("pg", world.remote_ns)

    answer = resolver.wait(name, "A", answers_with(set(pods.values())))
    assert names(answer) == {name}
    for pod, ip in pods.items():
        one = resolver.ask(f"{pod}.{name}")
        assert addresses(one) == {ip} and names(one) == {f"{pod}.{name}"}

    srv = resolver.ask(f"_pg._tcp.{name}", "SRV")
    [rrset] = records(srv, "SRV")
    assert rrset.name == asked(srv)
    assert {(r.port, r.target.to_text()) for r in rrset} == {(5432, f"{p}.{name}.") for p in pods}
    extra = {rrset.name.to_text(): {r.address for r in rrset} for rrset in srv.additional}
    assert extra == {f"{pod}.{name}.": {ip} for pod, ip in pods.items()}


def test_scaling_up_and_down(world: World, resolver: Resolver) -> None:
    world.service(
        "pg", clusterIP="None", selector={"app": "pg"}, ports=[{"name": "pg", "port": 5432}]
    )
    one = running(world, "statefulset", "pg", 1)
    sync(world)
    name = resolver.name("pg", world.remote_ns)
    resolver.wait(name, "A", answers_with(set(one.values())))

    workloads.scale(world.remote, world.remote_ns, "statefulsets", "pg", 3)
    three = published(world, "pg", 3)
    sync(world)
    resolver.wait(name, "A", answers_with(set(three.values())))
    resolver.wait(f"pg-2.{name}", "A", lambda answer: len(addresses(answer)) == 1)

    workloads.scale(world.remote, world.remote_ns, "statefulsets", "pg", 1)
    assert published(world, "pg", 1) == one
    sync(world)
    resolver.wait(name, "A", answers_with(set(one.values())))
    resolver.wait(f"pg-2.{name}", "A", nxdomain)


def test_a_pod_turning_not_ready_leaves_the_answer(world: World, resolver: Resolver) -> None:
    world.service(
        "api", clusterIP="None", selector={"app": "api"}, ports=[{"name": "h", "port": 80}]
    )
    ips = set(running(world, "deployment", "api", 3).values())
    sync(world)
    name = resolver.name("api", world.remote_ns)
    resolver.wait(name, "A", answers_with(ips))

    [pod, *_] = workloads.pods(world.remote, world.remote_ns, "api")
    workloads.make_not_ready(world.remote, world.remote_ns, pod["metadata"]["name"])
    ready = ips - {pod["status"]["podIP"]}
    not_ready = frozenset({pod["status"]["podIP"]})
    workloads.wait_endpoints(world.remote, world.remote_ns, "api", ready, not_ready)
    sync(world)
    resolver.wait(name, "A", answers_with(ready))


def test_a_deleted_or_unmirrored_service_is_nxdomain(world: World, resolver: Resolver) -> None:
    world.service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80}])
    world.service("private", labels={"other": "yes"}, ports=[{"name": "http", "port": 80}])
    running(world, "deployment", "web", 1)
    sync(world)
    web = resolver.name("web", world.remote_ns)
    resolver.wait(web, "A", lambda answer: rcode(answer) == "NOERROR" and bool(answer.answer))
    for unmirrored in ("private", "nothing-here"):
        answer = resolver.ask(resolver.name(unmirrored, world.remote_ns))
        assert nxdomain(answer) and names(answer) == {resolver.domain}  # the SOA of the zone asked
    assert nxdomain(resolver.ask(f"{world.remote_ns}.svc.{resolver.domain}"))  # no such shape
    # A name whose mirror could not be a Service name (over 63 characters, skipped by ksm-sync):
    # CoreDNS will not ask for it, and answers SERVFAIL.
    assert rcode(resolver.ask(resolver.name("a" * 50, world.remote_ns))) == "SERVFAIL"

    world.remote.delete("Service", world.remote_ns, "web")
    sync(world)
    resolver.wait(web, "A", nxdomain)


def test_an_external_name_answers_its_cname(world: World, resolver: Resolver) -> None:
    world.service("db", type="ExternalName", externalName="db.example.com", ports=[])
    sync(world)
    name = resolver.name("db", world.remote_ns)

    answer = resolver.wait(name, "A", lambda answer: bool(records(answer, "CNAME")))
    [cname] = records(answer, "CNAME")
    assert cname.name == asked(answer) and [r.target.to_text() for r in cname] == [
        "db.example.com."
    ]


def test_the_same_name_in_two_remote_namespaces(world: World, resolver: Resolver) -> None:
    other_ns = world.remote.create_namespace("remote")
    by_ns = {}
    for ns, replicas in ((world.remote_ns, 2), (other_ns, 1)):
        world.service(
            "web", ns, clusterIP="None", selector={"app": "web"}, ports=[{"name": "h", "port": 80}]
        )
        by_ns[ns] = set(running(world, "deployment", "web", replicas, ns).values())
    sync(world)

    for ns, ips in by_ns.items():
        resolver.wait(resolver.name("web", ns), "A", answers_with(ips))


def test_aaaa_answers_the_ipv6_addresses(world: World, resolver: Resolver) -> None:
    """Dual-stack slices (written by hand: the planes' pods are IPv4 only) answer A and AAAA."""
    world.service("dual", clusterIP="None", ports=[{"name": "h", "port": 80}])
    ports = [{"name": "h", "port": 80, "protocol": "TCP"}]
    for family, ip in (("IPv6", "fd00:10::5"), ("IPv4", "10.0.9.5")):
        ready = {"addresses": [ip], "conditions": {"ready": True}}
        world.slice("dual", f"dual-{family.lower()}", [ready], ports=ports, address_type=family)
    sync(world)
    name = resolver.name("dual", world.remote_ns)

    aaaa = resolver.wait(name, "AAAA", answers_with({"fd00:10::5"}))
    assert names(aaaa) == {name}
    assert addresses(resolver.ask(name, "A")) == {"10.0.9.5"}


def test_endpoints_that_stop_matching_stay_in_dns_under_the_guard_and_upsert_only(
    world: World, resolver: Resolver
) -> None:
    """A remote whose slices stop matching the selector (relabelled, or a cluster that stops
    publishing them) must not take every name out of DNS in one pass: the deletion guard and
    upsert-only hold the deletes back, and the names answer as before. Allowed, they go."""
    ips = {f"db{i}": f"10.1.0.{i + 1}" for i in range(6)}
    for name, ip in ips.items():
        world.service(name, clusterIP="None")
        world.slice(name, f"{name}-1", [{"addresses": [ip], "conditions": {"ready": True}}])
    sync(world)
    for name, ip in ips.items():
        resolver.wait(resolver.name(name, world.remote_ns), "A", answers_with({ip}))
    for name, ip in ips.items():
        world.slice(name, f"{name}-1", [{"addresses": [ip], "conditions": {"ready": True}}],
                    labels={"other": "x"})  # fmt: skip

    assert world.run().returncode == 1  # the guard: "would delete 6 of 6 mirrors"
    assert world.run("--policy", "upsert-only").returncode == 0
    for name, ip in ips.items():
        assert addresses(resolver.ask(resolver.name(name, world.remote_ns))) == {ip}

    assert world.run("--max-delete-ratio", "1").returncode == 0
    for name in ips:
        resolver.wait(resolver.name(name, world.remote_ns), "A", lambda a: not addresses(a))


def test_a_namespace_holding_the_separator_is_never_answered_under_another_name(
    world: World, resolver: Resolver
) -> None:
    """Issue 20: the answer rewrite splits a mirror name at its last separator, so a remote
    namespace holding it made `web.<ns>.svc.cluster.<prefix>` answer under another name.
    Such a remote is skipped, named, and its name is NXDOMAIN."""
    namespace = world.remote.create_namespace("x-6d6972726f720a")
    world.service("web", namespace=namespace)
    world.service("web")
    world.slice("web", "web-1", [{"addresses": ["10.1.0.1"], "conditions": {"ready": True}}])

    result = world.run()

    assert result.returncode == 1, result.stderr
    assert f"skip Service {namespace}/web: its namespace holds the mirror separator" in (
        result.stderr
    )
    name = resolver.name("web", world.remote_ns)
    resolver.wait(name, "A", lambda a: rcode(a) == "NOERROR" and names(a) == {name})
    odd = resolver.name("web", namespace)
    answer = resolver.ask(odd)
    assert nxdomain(answer) and str(asked(answer)) == f"{odd}.", answer.to_text()
    assert all(n.endswith(f"cluster.{world.prefix}") for n in names(answer))
