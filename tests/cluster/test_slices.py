"""EndpointSlices in, EndpointSlices out: the default mode, through the real CLI.

The remote slices here are written by hand, as a remote slice controller would write them,
so each test controls them exactly; `test_dns.py` runs the real controllers.
"""

from __future__ import annotations

import re

import pytest

from tests.support.cluster import Cluster, Json, endpoint_slice
from tests.support.workloads import wait_for, wait_slices
from tests.support.world import World

RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture
def world(remote: Cluster, local: Cluster) -> World:
    return World.new(remote, local, endpoints_api="endpointslices")


def endpoint(ip: str, **extra: object) -> Json:
    return {"addresses": [ip], "conditions": {"ready": True, "serving": True,
                                              "terminating": False}, **extra}  # fmt: skip


def summary(stderr: str) -> dict[str, int]:
    [line] = [line for line in stderr.splitlines() if "pass done:" in line]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line)}


def slices_of(world: World, name: str) -> list[Json]:
    selector = f"kubernetes.io/service-name={world.mirror_name(name)}"
    return world.local.list("EndpointSlice", world.mirror_ns, selector)


def slice_writes(world: World) -> list[Json]:
    return [w for w in world.writes() if w["objectRef"]["resource"] == "endpointslices"]


def test_each_remote_slice_becomes_a_slice_of_the_mirror(world: World) -> None:
    world.service("web", ports=[{"name": "http", "port": 80, "targetPort": 8080}])
    world.slice("web", "web-a", [
        endpoint("10.1.0.1", hostname="web-0", nodeName="remote-node-1", zone="eu-1a",
                 targetRef={"kind": "Pod", "name": "web-0", "namespace": world.remote_ns},
                 hints={"forZones": [{"name": "eu-1a"}]}),
        {"addresses": ["10.1.0.2"],
         "conditions": {"ready": False, "serving": True, "terminating": True}},
    ])  # fmt: skip
    world.slice("web", "web-b", [endpoint("fd00::1")], address_type="IPv6")

    result = world.run()

    assert result.returncode == 0, result.stderr
    mine = {s["addressType"]: s for s in slices_of(world, "web")}
    assert set(mine) == {"IPv4", "IPv6"}
    ipv4 = mine["IPv4"]
    assert ipv4["metadata"]["labels"] == {
        "kubernetes.io/service-name": world.mirror_name("web"),
        "endpointslice.kubernetes.io/managed-by": "ksm-sync",
        "mirrored-svc": "true",
        "mirror-svc-prefix-sync": world.prefix,
    }
    assert ipv4["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    ready, terminating = sorted(ipv4["endpoints"], key=lambda e: e["addresses"])
    assert ready == {"addresses": ["10.1.0.1"], "hostname": "web-0",
                     "conditions": {"ready": True, "serving": True, "terminating": False},
                     "targetRef": {"kind": "Pod", "name": "web-0"}}  # fmt: skip
    assert terminating["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert world.mirrors("Endpoints") == {}  # slices mode writes no Endpoints


def test_zero_writes_at_rest_and_one_write_per_slice_that_changed(world: World) -> None:
    for name in ("a", "b", "c"):
        world.service(name)
        world.slice(name, f"{name}-1", [endpoint("10.1.0.1")])
        world.slice(name, f"{name}-2", [endpoint("10.1.0.2")])
    assert world.run().returncode == 0
    created = len(world.writes())
    assert len(slice_writes(world)) == 6 and created == 9

    at_rest = world.run()
    assert at_rest.returncode == 0 and len(world.writes()) == created
    assert summary(at_rest.stderr)["unchanged"] == 3

    world.slice("a", "a-1", [endpoint("10.1.0.1"), endpoint("10.1.0.9")])
    world.remote.delete("EndpointSlice", world.remote_ns, "b-2")  # b keeps b-1
    changed = world.run()

    assert changed.returncode == 0, changed.stderr
    new = world.writes()[created:]
    assert sorted(w["verb"] for w in new) == ["delete", "patch"]
    assert all(w["objectRef"]["resource"] == "endpointslices" for w in new)
    assert len(slices_of(world, "b")) == 1


def test_a_service_with_2500_endpoints_is_mirrored_whole(world: World) -> None:
    world.service("big", clusterIP="None")
    for s in range(25):
        world.slice("big", f"big-{s:02d}",
                    [endpoint(f"10.3.{s}.{i + 1}") for i in range(100)])  # fmt: skip

    result = world.run()

    assert result.returncode == 0, result.stderr
    mine = slices_of(world, "big")
    assert len(mine) == 25
    assert sum(len(s["endpoints"]) for s in mine) == 2500


def test_a_slice_name_held_by_someone_else_is_a_conflict_left_untouched(world: World) -> None:
    world.service("web")
    world.slice("web", "web-a", [endpoint("10.1.0.1")])
    assert world.run().returncode == 0
    [ours] = slices_of(world, "web")
    name = ours["metadata"]["name"]
    world.local.delete("EndpointSlice", world.mirror_ns, name)
    theirs = endpoint_slice(world.mirror_ns, "someone-else", name, [endpoint("192.0.2.1")],
                            labels={"owner": "someone"})  # fmt: skip
    before = world.local.create(theirs)["metadata"]["resourceVersion"]

    result = world.run()

    assert result.returncode == 1, result.stderr
    assert f"a EndpointSlice named {name} already exists without the labels" in result.stderr
    kept = world.local.get("EndpointSlice", world.mirror_ns, name)
    assert kept["metadata"]["resourceVersion"] == before


def test_slice_deletes_go_through_the_policies_and_the_guard(world: World) -> None:
    names = [f"s{i}" for i in range(8)]
    for name in names:
        world.service(name)
        world.slice(name, f"{name}-1", [endpoint("10.1.0.1")])
    assert world.run().returncode == 0
    for name in names:  # the remote slices stop matching the selector
        world.slice(name, f"{name}-1", [endpoint("10.1.0.1")], labels={"other": "x"})
    writes = len(world.writes())

    upsert_only = world.run("--policy", "upsert-only")
    guarded = world.run()

    assert upsert_only.returncode == 0 and summary(upsert_only.stderr)["held"] == 8
    assert guarded.returncode == 1
    assert "would delete 8 of 8 mirrors (8 of them by deleting their endpoints)" in guarded.stderr
    assert len(world.writes()) == writes


def test_endpoints_mirrors_are_replaced_by_slices_written_first(world: World) -> None:
    """A namespace of Endpoints mirrors (kube-service-mirror's, or an earlier ksm-sync's)."""
    subsets = [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "http", "port": 8080}]}]
    for name in ("a", "b", "c"):
        world.service(name)
        world.endpoints(name, subsets)  # the remote's EndpointSliceMirroring makes its slices
    for name in ("a", "b", "c"):
        wait_slices(world.remote, world.remote_ns, name, {"10.1.0.1"})
    assert world.run("--endpoints-api", "endpoints").returncode == 0
    assert len(world.mirrors("Endpoints")) == 3
    before = len(world.writes())

    migrated = world.run()

    assert migrated.returncode == 0, migrated.stderr
    assert world.mirrors("Endpoints") == {} and all(len(slices_of(world, n)) == 1 for n in "abc")
    order = [(w["objectRef"]["resource"], w["verb"], w["objectRef"]["name"])
             for w in world.writes()[before:]]  # fmt: skip
    for name in "abc":
        mirror = world.mirror_name(name)
        created = next(i for i, (r, _, n) in enumerate(order) if r == "endpointslices"
                       and n.startswith(mirror))  # fmt: skip
        assert order.index(("endpoints", "delete", mirror)) > created
    assert len(world.writes()) == before + 6  # 3 slices created, 3 Endpoints deleted

    back = world.run("--endpoints-api", "endpoints")  # and back again
    assert back.returncode == 0 and len(world.mirrors("Endpoints")) == 3
    managers = {s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
                for n in "abc" for s in slices_of(world, n)}  # fmt: skip
    assert "ksm-sync" not in managers  # the mirroring controller's answer for the Endpoints


def test_a_remote_that_cannot_list_slices_is_told_the_rule_and_nothing_is_written(
    world: World,
) -> None:
    """kube-service-mirror's remote RBAC: Services and Endpoints only."""
    world.service("web")
    remote = world.remote
    remote.create({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "ksm-go", "namespace": world.remote_ns}})  # fmt: skip
    role = f"ksm-go-{world.prefix}"
    remote.request("POST", f"{RBAC}/clusterroles", {
        "metadata": {"name": role},
        "rules": [{"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["list"]}],
    })  # fmt: skip
    remote.request("POST", f"{RBAC}/clusterrolebindings", {
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "ksm-go", "namespace": world.remote_ns}],
    })  # fmt: skip
    token = remote.service_account_token(world.remote_ns, "ksm-go")
    token_file = world.remote.plane.dir.parent / f"{role}.token"
    token_file.write_text(token)
    args = world.args()
    i = args.index("--target-kube-config")
    args[i : i + 2] = ["--remote-api-url", remote.plane.url, "--remote-sa-token-path",
                       str(token_file), "--remote-ca-url", str(remote.plane.ca_file)]  # fmt: skip

    result = world.run(*args, defaults=False)

    assert result.returncode == 3, result.stderr
    assert "the remote ClusterRole must grant list on endpointslices" in result.stderr
    assert "--endpoints-api endpoints" in result.stderr
    assert world.writes() == []
    assert world.run(*args, "--endpoints-api", "endpoints", defaults=False).returncode == 0


def test_endpoints_mode_leaves_the_mirroring_controllers_slices_alone_and_rests(
    remote: Cluster, local: Cluster
) -> None:
    """Issue 20: in Endpoints mode the local EndpointSliceMirroring controller copies each
    Endpoints mirror into slices of its own, ksm-sync's labels included. ksm-sync took them
    for its own and deleted them every pass (the controller made them again): headless names
    blinked, and a pass over an unchanged world wrote."""
    world = World.new(remote, local, endpoints_api="endpoints")
    subsets = [{"addresses": [{"ip": "10.1.0.1", "hostname": "web-0"}],
                "ports": [{"name": "http", "port": 8080}]}]  # fmt: skip
    for name, spec in (("web", {}), ("db", {"clusterIP": "None"})):
        world.service(name, **spec)
        world.endpoints(name, subsets)
    assert world.run().returncode == 0

    def controllers() -> dict[str, str] | None:
        found = {
            s["metadata"]["name"]: s["metadata"]["uid"]
            for name in ("web", "db")
            for s in world.local.list("EndpointSlice", world.mirror_ns,
                                      f"kubernetes.io/service-name={world.mirror_name(name)}")
            if s["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by")
            == "endpointslicemirroring-controller.k8s.io"
        }  # fmt: skip
        return found if len(found) == 2 else None

    made = wait_for("the mirroring controller's slices of both mirrors", controllers)
    writes = len(world.writes())

    again = world.run()

    assert again.returncode == 0, again.stderr
    assert summary(again.stderr)["unchanged"] == 2 and "EndpointSlice" not in again.stderr
    assert world.writes()[writes:] == []
    assert controllers() == made  # the same slices: same names, same uids
