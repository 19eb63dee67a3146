"""The planner, with plain values: no client, no server."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from ksm_sync.mirror import Mirror, Skip, desired_mirrors
from ksm_sync.model import Endpoints, Meta, Ref, Service, ServicePort, subsets_from_api
from ksm_sync.plan import Plan, Policy, calculate
from ksm_sync.settings import Target

PREFIX = "east"
SYNC = Policy()


def remote(name: str, namespace: str = "shop", *, headless: bool = False, ports=(80,)) -> Service:
    return Service(
        meta=Meta(Ref(namespace, name)),
        type="ClusterIP",
        headless=headless,
        ports=tuple(ServicePort("", "TCP", p, p) for p in ports),
    )


def remote_endpoints(name: str, ips: list[str], namespace: str = "shop") -> Endpoints:
    subsets = subsets_from_api([{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 80}]}])
    return Endpoints(meta=Meta(Ref(namespace, name)), subsets=subsets)


def desired(services, endpoints=()) -> dict[str, Mirror]:
    return desired_mirrors(services, endpoints, Target(PREFIX, "mirrors"))[0]


def stored(mirrors: dict[str, Mirror]) -> tuple[list[Service], list[Endpoints]]:
    """What the API server holds after the mirrors were written (with server-side fields)."""
    services = [
        replace(m.service, meta=replace(m.service.meta, uid=f"uid-{n}")) for n, m in mirrors.items()
    ]
    endpoints = [m.endpoints for m in mirrors.values() if m.endpoints is not None]
    return services, endpoints


def run(want: dict[str, Mirror], current=([], []), policy: Policy = SYNC) -> Plan:
    return calculate(want, current[0], current[1], prefix=PREFIX, policy=policy)


def actions(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.name.split("-")[1]) for c in p.changes]


def test_empty_local_creates_services_and_endpoints() -> None:
    want = desired([remote("web"), remote("db")], [remote_endpoints("web", ["10.0.0.1"])])
    assert sorted(actions(run(want))) == [
        ("create", "Endpoints", "web"),
        ("create", "Service", "db"),
        ("create", "Service", "web"),
    ]


def test_unchanged_world_plans_nothing() -> None:
    want = desired([remote("web")], [remote_endpoints("web", ["10.0.0.1"])])
    result = run(want, stored(want))
    assert result.changes == () and result.unchanged == 1


def test_port_change_is_an_update_and_headless_flip_a_recreate() -> None:
    before = desired([remote("web"), remote("db")])
    after = desired([remote("web", ports=(80, 443)), remote("db", headless=True)])
    assert sorted(actions(run(after, stored(before)))) == [
        ("recreate", "Service", "db"),
        ("update", "Service", "web"),
    ]


def test_address_change_updates_only_endpoints() -> None:
    before = desired([remote("web")], [remote_endpoints("web", ["10.0.0.1"])])
    after = desired([remote("web")], [remote_endpoints("web", ["10.0.0.2"])])
    assert actions(run(after, stored(before))) == [("update", "Endpoints", "web")]


def test_stale_mirror_is_deleted_with_its_endpoints() -> None:
    before = desired([remote("web"), remote("db")], [remote_endpoints("db", ["10.0.0.1"])])
    after = desired([remote("web")])
    assert sorted(actions(run(after, stored(before)))) == [
        ("delete", "Endpoints", "db"),
        ("delete", "Service", "db"),
    ]


def test_objects_without_our_labels_are_never_touched() -> None:
    before = desired([remote("web")])
    services, _ = stored(before)
    foreign = [
        replace(s, meta=replace(s.meta, labels=(("mirror-svc-prefix-sync", "west"),)))
        for s in services
    ]
    result = run({}, (foreign, []))
    assert result.changes == ()


def test_upsert_only_never_deletes() -> None:
    before = desired([remote("web"), remote("db")])
    result = run(desired([remote("web")]), stored(before), Policy(delete=False))
    assert result.changes == () and [c.name for c in result.held] == ["east-db-6d6972726f720a-shop"]


def test_no_svc_sync_deletes_only_remotes_seen_to_disappear() -> None:
    before = desired([remote("web"), remote("db"), remote("old")])
    policy = Policy(deletable_remotes=frozenset({Ref("shop", "db")}))
    result = run(desired([remote("web")]), stored(before), policy)
    assert actions(result) == [("delete", "Service", "db")]


def test_guard_holds_every_delete_when_most_mirrors_would_go() -> None:
    names = [f"s{i}" for i in range(10)]
    before = desired([remote(n) for n in names])
    result = run(desired([remote("s0")]), stored(before), Policy(max_delete_ratio=0.5))
    assert result.changes == () and len(result.held) == 9
    assert result.guard is not None and "would delete 9 of 10" in result.guard
    allowed = run(desired([remote("s0")]), stored(before), Policy(max_delete_ratio=1.0))
    assert len(allowed.changes) == 9 and allowed.guard is None


def test_guard_ignores_a_handful() -> None:
    before = desired([remote(f"s{i}") for i in range(5)])
    assert len(run({}, stored(before)).changes) == 5


names = st.text("abcdefgh", min_size=1, max_size=6)
service_sets = st.dictionaries(
    st.tuples(names, st.sampled_from(["a", "b"])),
    st.tuples(st.booleans(), st.lists(st.integers(1, 65535), min_size=1, max_size=3, unique=True)),
    max_size=12,
)


def build(spec) -> dict[str, Mirror]:
    return desired([remote(n, ns, headless=h, ports=tuple(p)) for (n, ns), (h, p) in spec.items()])


@given(service_sets, service_sets)
def test_one_plan_converges_any_world_to_any_other(before_spec, after_spec) -> None:
    before, after = build(before_spec), build(after_spec)
    result = run(after, stored(before), Policy(max_delete_ratio=1.0))
    touched = {c.name for c in result.changes}
    assert touched | {n for n in after if n not in touched} == set(before) | set(after)
    for change in result.changes:
        if change.action == "delete":
            assert change.name not in after  # nothing that should exist is ever deleted
    assert run(after, stored(after)).changes == ()  # and once there, nothing more to do


def test_endpoints_deletes_are_deletes_for_the_policies_and_the_guard() -> None:
    """A remote whose Endpoints stop matching empties its mirror: that is a delete too."""
    names = [f"s{i}" for i in range(8)]
    before = desired([remote(n) for n in names], [remote_endpoints(n, ["10.0.0.1"]) for n in names])
    after = desired([remote(n) for n in names])  # the Services remain, their Endpoints do not
    upsert = run(after, stored(before), Policy(delete=False))
    assert upsert.changes == () and len(upsert.held) == 8
    assert run(after, stored(before), Policy(deletable_remotes=frozenset())).changes == ()
    guarded = run(after, stored(before))
    assert guarded.changes == () and guarded.guard is not None
    assert "would delete 8 of 8 mirrors (8 of them by deleting their endpoints)" in guarded.guard
    assert actions(run(after, stored(before), Policy(max_delete_ratio=1.0))) == [
        ("delete", "Endpoints", n) for n in names
    ]


def test_a_skipped_remote_leaves_its_old_mirror_as_it_is() -> None:
    before = desired([remote("web")], [remote_endpoints("web", ["10.0.0.1"])])
    [name] = before
    skip = Skip(Ref("shop", "web"), name, "cannot be mirrored now")
    result = calculate({}, *stored(before), prefix=PREFIX, skipped=[skip])
    assert result.changes == () and result.held == ()


worlds = st.dictionaries(
    st.tuples(names, st.sampled_from(["a", "b"])),
    st.tuples(st.booleans(), st.sampled_from([None, "10.0.0.1", "10.0.0.2"])),
    max_size=12,
)


def build_world(spec) -> dict[str, Mirror]:
    services = [remote(n, ns, headless=h) for (n, ns), (h, _) in spec.items()]
    endpoints = [remote_endpoints(n, [ip], ns) for (n, ns), (_, ip) in spec.items() if ip]
    return desired(services, endpoints)


@given(worlds, worlds, st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]))
def test_no_delete_of_any_kind_escapes_the_policies_or_the_guard(
    before_spec, after_spec, ratio
) -> None:
    before, after = build_world(before_spec), build_world(after_spec)
    current = stored(before)
    for policy in (Policy(delete=False), Policy(deletable_remotes=frozenset())):
        assert all(c.action != "delete" for c in run(after, current, policy).changes)
    guarded = run(after, current, Policy(max_delete_ratio=ratio))
    deleting = {c.name for c in guarded.changes if c.action == "delete"}
    if len(before) > Policy().guard_min_mirrors:
        assert len(deleting) <= ratio * len(before)
    for change in guarded.changes:
        if change.action == "delete" and change.kind == "Service":
            assert change.name not in after


def test_a_name_another_prefix_holds_is_a_conflict_and_never_written() -> None:
    """Issue 20: prefixes `east` (Service `a-web`) and `east-a` (Service `web`) both map to
    `east-a-web-6d6972726f720a-shop`; the one that holds it keeps it, the other is told."""
    holder = desired_mirrors([remote("a-web")], [], Target("east", "mirrors"))[0]
    services, _ = stored(holder)
    other = desired_mirrors([remote("web")], [], Target("east-a", "mirrors"))[0]
    assert set(other) == set(holder)
    result = calculate(other, services, [], prefix="east-a")
    assert result.changes == () and result.unchanged == 0
    [conflict] = result.conflicts
    assert conflict.remote == Ref("shop", "web") and "'east'" in conflict.reason
    assert calculate(holder, services, [], prefix="east").changes == ()


def test_a_mirror_without_endpoint_objects_is_named_as_empty() -> None:
    """Issue 20: a selected Service whose Endpoints lack the label is mirrored empty."""
    want = desired([remote("web"), remote("db")], [remote_endpoints("db", ["10.0.0.1"])])
    result = run(want)
    assert [m.remote for m in result.empty] == [Ref("shop", "web")]
