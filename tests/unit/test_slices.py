"""EndpointSlices without a cluster: their values, the mirror's own slices, and the plan."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from ksm_sync.mirror import Mirror, desired_mirrors
from ksm_sync.model import (
    EndpointSlice,
    Meta,
    Ref,
    Service,
    ServicePort,
    endpoints_from_api,
    slice_from_api,
    slice_to_api,
)
from ksm_sync.plan import Plan, Policy, calculate
from ksm_sync.settings import Target

TARGET = Target("east", "mirrors")


def remote_slice(service: str, name: str, ips: list[str], namespace: str = "shop",
                 **endpoint: object) -> EndpointSlice:  # fmt: skip
    return slice_from_api({
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, **endpoint}
                      for ip in ips],
    })  # fmt: skip


def remote(name: str, namespace: str = "shop") -> Service:
    return Service(
        Meta(Ref(namespace, name)), "ClusterIP", False, (ServicePort("", "TCP", 80, 80),)
    )


def desired(services: list[Service], slices: list[EndpointSlice]) -> dict[str, Mirror]:
    return desired_mirrors(services, (), TARGET, slices)[0]


def stored(mirrors: dict[str, Mirror]) -> tuple[list[Service], list[EndpointSlice]]:
    services = [
        replace(m.service, meta=replace(m.service.meta, uid=f"u-{n}")) for n, m in mirrors.items()
    ]
    return services, [s for m in mirrors.values() for s in m.slices]


SYNC = Policy()


SYNC_ALL = Policy(max_delete_ratio=1.0)  # sync with the guard off


def run(want: dict[str, Mirror], current, policy: Policy = SYNC, endpoints=()) -> Plan:
    services, slices = current
    return calculate(want, services, endpoints, prefix="east", policy=policy, slices=slices)


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return sorted((c.action, c.kind) for c in plan.changes)


def test_a_slice_keeps_what_routes_traffic_and_drops_the_remotes_topology() -> None:
    obj = {
        "metadata": {"name": "web-abc", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv6",
        "ports": [{"name": "b", "port": 2, "protocol": "UDP"}, {"name": "a", "port": 1}],
        "endpoints": [
            {"addresses": ["fd00::2"], "conditions": {"ready": False, "serving": True,
                                                      "terminating": True},
             "nodeName": "remote-node", "zone": "eu-1a", "hints": {"forZones": [{"name": "x"}]},
             "hostname": "web-1", "targetRef": {"kind": "Pod", "name": "web-1", "uid": "u"}},
            {"addresses": ["fd00::1"], "conditions": {}},
        ],
    }  # fmt: skip
    value = slice_from_api(obj)
    assert value.service == "web" and value.address_type == "IPv6"
    assert [p.name for p in value.ports] == ["a", "b"] and value.ports[0].protocol == "TCP"
    assert [e.addresses for e in value.endpoints] == [("fd00::1",), ("fd00::2",)]
    api = slice_to_api(value)
    terminating = api["endpoints"][1]
    assert terminating == {"addresses": ["fd00::2"], "hostname": "web-1",
                           "conditions": {"ready": False, "serving": True, "terminating": True},
                           "targetRef": {"name": "web-1", "kind": "Pod"}}  # fmt: skip
    assert api["endpoints"][0]["conditions"] == {}  # unset stays unset
    assert slice_from_api(api) == replace(value, meta=slice_from_api(api).meta)


def test_each_remote_slice_becomes_one_slice_of_the_mirror_with_a_stable_name() -> None:
    slices = [remote_slice("web", "web-abc", ["10.0.0.1"]), remote_slice("web", "web-xyz", [])]
    [mirror] = desired([remote("web")], slices).values()
    assert mirror.endpoints is None and len(mirror.slices) == 2
    for mine in mirror.slices:
        assert mine.meta.ref.namespace == "mirrors" and mine.service == mirror.name
        assert mine.meta.ref.name.startswith(f"{mirror.name}-")
        assert len(mine.meta.ref.name) == len(mirror.name) + 11
        assert dict(mine.meta.labels) == {
            "kubernetes.io/service-name": mirror.name,
            "endpointslice.kubernetes.io/managed-by": "ksm-sync",
            "mirrored-svc": "true",
            "mirror-svc-prefix-sync": "east",
        }
    again = desired([remote("web")], list(reversed(slices)))
    assert {s.meta.ref.name for s in again[mirror.name].slices} == {
        s.meta.ref.name for s in mirror.slices
    }


def test_slices_of_other_services_and_of_external_names_are_not_mirrored() -> None:
    external = Service(Meta(Ref("shop", "ext")), "ExternalName", False, (), "example.com")
    slices = [remote_slice("ext", "ext-1", ["10.0.0.1"]), remote_slice("other", "o-1", ["1.1.1.1"])]
    mirrors = desired([external, remote("web")], slices)
    assert all(m.slices == () for m in mirrors.values())


def test_an_unchanged_world_plans_nothing_and_an_endpoint_change_updates_one_slice() -> None:
    before = desired([remote("web")], [remote_slice("web", "a", ["10.0.0.1"]),
                                       remote_slice("web", "b", ["10.0.0.2"])])  # fmt: skip
    assert run(before, stored(before)).changes == ()
    after = desired([remote("web")], [remote_slice("web", "a", ["10.0.0.1"]),
                                      remote_slice("web", "b", ["10.0.0.3"])])  # fmt: skip
    assert kinds(run(after, stored(before))) == [("update", "EndpointSlice")]


def test_a_slice_that_goes_while_others_stay_is_deleted_but_not_under_upsert_only() -> None:
    """Issue 20: upsert-only deletes nothing, not even a slice whose remote slice went; it
    holds it back and counts it (it used to delete it, against what the README said)."""
    before = desired([remote("web")], [remote_slice("web", "a", ["10.0.0.1"]),
                                       remote_slice("web", "b", ["10.0.0.2"])])  # fmt: skip
    after = desired([remote("web")], [remote_slice("web", "a", ["10.0.0.1"])])
    assert kinds(run(after, stored(before))) == [("delete", "EndpointSlice")]
    result = run(after, stored(before), Policy(delete=False))
    assert result.changes == () and [c.kind for c in result.held] == ["EndpointSlice"]


def test_a_mirror_losing_all_its_slices_is_a_delete_for_the_policies_and_the_guard() -> None:
    names = [f"s{i}" for i in range(8)]
    before = desired(
        [remote(n) for n in names], [remote_slice(n, f"{n}-1", ["10.0.0.1"]) for n in names]
    )
    after = desired([remote(n) for n in names], [])
    upsert = run(after, stored(before), Policy(delete=False))
    assert upsert.changes == () and len(upsert.held) == 8
    guarded = run(after, stored(before))
    assert guarded.changes == () and "would delete 8 of 8 mirrors (8 of them" in (
        guarded.guard or ""
    )


def test_endpoints_mirrors_are_replaced_by_slices_and_back() -> None:
    slices = [remote_slice("web", "a", ["10.0.0.1"])]
    want = desired([remote("web")], slices)
    [name] = want
    legacy = endpoints_from_api({
        "metadata": {"name": name, "namespace": "mirrors",
                     "labels": {"mirrored-svc": "true", "mirror-svc-prefix-sync": "east"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 8080}]}],
    })  # fmt: skip
    services, _ = stored(want)
    to_slices = run(want, (services, []), endpoints=[legacy])
    assert kinds(to_slices) == [("create", "EndpointSlice"), ("delete", "Endpoints")]
    assert [c.reason for c in to_slices.changes if c.action == "delete"] == [
        "replaced by EndpointSlices"
    ]
    back = desired_mirrors([remote("web")], [replace(legacy, meta=Meta(Ref("shop", "web")))],
                           Target("east", "mirrors", "endpoints"))[0]  # fmt: skip
    to_endpoints = run(back, stored(want))
    assert kinds(to_endpoints) == [("create", "Endpoints"), ("delete", "EndpointSlice")]
    # Issue 20: under upsert-only the replaced kind stays, held back and counted.
    upsert = run(back, stored(want), Policy(delete=False))
    assert kinds(upsert) == [("create", "Endpoints")]
    assert [c.kind for c in upsert.held] == ["EndpointSlice"]


worlds = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]),
    st.lists(st.sampled_from(["s1", "s2", "s3"]), unique=True, max_size=3),
    max_size=7,
)


def build(spec: dict[str, list[str]]) -> dict[str, Mirror]:
    slices = [remote_slice(n, f"{n}-{s}", ["10.0.0.1"]) for n, names in spec.items() for s in names]
    return desired([remote(n) for n in spec], slices)


@given(worlds, worlds)
def test_under_upsert_only_nothing_is_deleted(before_spec, after_spec) -> None:
    before, after = build(before_spec), build(after_spec)
    result = run(after, stored(before), Policy(delete=False))
    assert all(c.action != "delete" for c in result.changes)
    # and what it holds back is exactly what sync would delete
    deletes = {c.object_name for c in run(after, stored(before), SYNC_ALL).changes
               if c.action == "delete"}  # fmt: skip
    assert {c.object_name for c in result.held} == deletes
