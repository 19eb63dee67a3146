"""The cluster set's merge and plan, with plain values: KEP-1645's rules, no cluster."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from ksm_sync import ownership
from ksm_sync.clusterset import Import, Member, merge_imports
from ksm_sync.model import (
    Condition,
    EndpointSlice,
    Meta,
    Ref,
    Service,
    ServiceExport,
    ServicePort,
    slice_from_api,
)
from ksm_sync.naming import derived_name
from ksm_sync.observe import Exported, Imported
from ksm_sync.plan import Policy, calculate_imports

WEB = Ref("shop", "web")
HOUR = 3600.0


def export(name: str = "web", created: str = "2026-01-01T00:00:00Z", **spec) -> ServiceExport:
    return ServiceExport(Meta(Ref("shop", name), uid="e", resource_version="1"), created, 1,
                         **spec)  # fmt: skip


def service(
    name: str = "web", *, ports: tuple[tuple[str, int, str], ...] = (("http", 80, "TCP"),), **spec
) -> Service:
    spec.setdefault("ip_families", ("IPv4",))
    return Service(
        Meta(Ref("shop", name)),
        spec.pop("type", "ClusterIP"),
        spec.pop("headless", False),
        tuple(ServicePort(n, proto, port, port) for n, port, proto in ports),
        **spec,
    )


def a_slice(ip: str, name: str = "web-abc", service_name: str = "web") -> EndpointSlice:
    return slice_from_api({
        "metadata": {"name": name, "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "hostname": "web-0"}],
    })  # fmt: skip


def member(cluster: str, *pairs: tuple[ServiceExport, Service | None], ips=("10.1.0.1",)) -> Member:
    exports = tuple(e for e, _ in pairs)
    services = tuple(s for _, s in pairs if s is not None)
    slices = tuple(
        a_slice(ip, f"{s.meta.ref.name}-{cluster}-{i}", s.meta.ref.name)
        for s in services
        for i, ip in enumerate(ips)
    )
    return Member(cluster, Exported(exports, services, slices, "v1beta1"))


NAMESPACES = frozenset({"shop"})


def merge(members, local: str = "east", current: Imported | None = None, now: float = 0.0):
    current = current or Imported(namespaces=NAMESPACES)
    return merge_imports(members, local, current, now=now, unreachable_after=HOUR)


def stored(imports: dict[Ref, Import], ips: tuple[str, ...] = ("10.112.0.5",)) -> Imported:
    """What the local API server holds once the imports are written (derived IPs allocated)."""
    derived = tuple(
        replace(
            i.derived, meta=replace(i.derived.meta, uid="d"), cluster_ips=ips, ip_families=("IPv4",)
        )
        for i in imports.values()
        if i.derived
    )
    written = tuple(
        replace(
            i.service_import,
            ips=ips if i.derived else (),
            ip_families=("IPv4",) if i.derived else i.service_import.ip_families,
            meta=replace(i.service_import.meta, uid="i"),
        )
        for i in imports.values()
    )
    slices = tuple(s for i in imports.values() for s in i.slices)
    return Imported(written, derived, slices, NAMESPACES)


def conditions(status: ServiceExport) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_clusterset_ip_export_becomes_an_import_a_derived_service_and_slices() -> None:
    svc = service(affinity_timeout=10, internal_traffic_policy="Cluster",
                  traffic_distribution="PreferClose")  # fmt: skip
    merged = merge([member("east"), member("west", (export(), svc), ips=("10.2.0.1", "10.2.0.2"))])
    [imp] = merged.imports.values()
    si = imp.service_import
    assert (si.type, si.clusters, si.affinity_timeout) == ("ClusterSetIP", ("west",), 10)
    assert (si.internal_traffic_policy, si.traffic_distribution) == ("Cluster", "PreferClose")
    assert [(p.name, p.port, p.protocol) for p in si.ports] == [("http", 80, "TCP")]
    assert si.meta.label(ownership.CLUSTER_SET_LABEL) == "east"
    derived = derived_name("shop", "web")
    assert si.meta.annotation(ownership.DERIVED_ANNOTATION) == derived
    assert imp.derived is not None and imp.derived.meta.ref == Ref("shop", derived)
    assert (imp.derived.ip_family_policy, imp.derived.ip_families) == ("SingleStack", ("IPv4",))
    labels = [dict(s.meta.labels) for s in imp.slices]
    assert len(labels) == 2 and all(
        lab[ownership.MCS_SERVICE_LABEL] == "web" and lab[ownership.MCS_SOURCE_LABEL] == "west"
        and lab[ownership.SERVICE_NAME_LABEL] == derived
        and lab[ownership.MANAGED_BY_LABEL] == "ksm-sync" for lab in labels
    )  # fmt: skip
    assert merged.statuses == []  # east exports nothing


def test_a_headless_export_has_no_derived_service_and_its_slices_name_no_service() -> None:
    merged = merge([member("east", (export(), service(headless=True)))])
    [imp] = merged.imports.values()
    assert imp.service_import.type == "Headless" and imp.derived is None
    assert imp.service_import.ip_families == ("IPv4",) and imp.service_import.ips == ()
    assert all(ownership.SERVICE_NAME_LABEL not in dict(s.meta.labels) for s in imp.slices)
    assert imp.slices[0].endpoints[0].hostname == "web-0"


def test_the_oldest_export_wins_ports_are_the_union_and_both_exports_say_conflict() -> None:
    old = (
        export(created="2026-01-01T00:00:00Z"),
        service(ports=(("tcp", 42, "TCP"), ("udp", 42, "UDP"))),
    )
    new = (export(created="2026-01-02T00:00:00Z"), service(ports=(("tcp", 43, "TCP"),
                                                                  ("stcp", 142, "SCTP")),
                                                           headless=True))  # fmt: skip
    for local in ("east", "west"):
        merged = merge([member("east", old), member("west", new)], local=local)
        [imp] = merged.imports.values()
        assert imp.service_import.type == "ClusterSetIP"  # east's, the oldest
        assert sorted((p.name, p.port, p.protocol) for p in imp.service_import.ports) == [
            ("stcp", 142, "SCTP"), ("tcp", 42, "TCP"), ("udp", 42, "UDP")
        ]  # fmt: skip
        assert imp.service_import.clusters == ("east", "west")
        [status] = merged.statuses
        assert conditions(status)["Conflict"] == ("True", "TypeConflict,PortConflict")
        assert conditions(status)["Valid"] == ("True", "Valid")


def test_a_tie_on_age_goes_to_the_first_cluster_id() -> None:
    a = (export(), service(headless=True))
    b = (export(), service())
    [imp] = merge([member("west", b), member("east", a)]).imports.values()
    assert imp.service_import.type == "Headless"


def test_an_external_name_or_a_missing_service_is_not_valid_and_imports_nothing() -> None:
    external = service(type="ExternalName", external_name="db.example.com")
    merged = merge([member("east", (export(), external))])
    assert merged.imports == {}
    [status] = merged.statuses
    assert conditions(status)["Valid"] == ("False", "InvalidServiceType")
    assert conditions(status)["Ready"] == ("False", "Failed") and "Conflict" not in conditions(
        status
    )
    missing = merge([member("east", (export(), None))])
    assert conditions(missing.statuses[0])["Valid"] == ("False", "NoService")


def test_conflicts_are_named_by_the_keps_reasons() -> None:
    base = (export(), service())
    cases = {
        "SessionAffinityConflict": service(affinity_timeout=10),
        "InternalTrafficPolicyConflict": service(internal_traffic_policy="Local"),
        "TrafficDistributionConflict": service(traffic_distribution="PreferClose"),
        "IPFamilyConflict": service(ip_families=("IPv4", "IPv6")),
    }
    for reason, other in cases.items():
        merged = merge([member("east", base), member("west", (export(), other))])
        assert conditions(merged.statuses[0])["Conflict"] == ("True", reason), reason
    labels = (export(exported_labels=(("a", "1"),)), service())
    merged = merge([member("east", base), member("west", labels)])
    assert conditions(merged.statuses[0])["Conflict"] == ("True", "LabelsConflict")
    agree = merge([member("east", base), member("west", (export(), service()))])
    assert conditions(agree.statuses[0])["Conflict"] == ("False", "NoConflicts")


def test_exported_labels_and_annotations_of_the_winner_are_the_imports() -> None:
    winner = export(created="2026-01-01T00:00:00Z", exported_labels=(("tier", "web"),),
                    exported_annotations=(("note", "x"),))  # fmt: skip
    later = export(created="2026-01-02T00:00:00Z", exported_labels=(("tier", "other"),))
    [imp] = merge([member("east", (winner, service())), member("west", (later, service()))]
                  ).imports.values()  # fmt: skip
    assert imp.service_import.meta.label("tier") == "web"
    assert imp.service_import.meta.annotation("note") == "x"


def test_an_unchanged_set_plans_nothing_and_conditions_are_written_once() -> None:
    members = [member("east", (export(), service())), member("west", (export(), service()))]
    merged = merge(members, current=stored(merge(members).imports))
    plan = calculate_imports(merged.imports, stored(merged.imports), merged.statuses,
                             members[0].exported.exports, cluster_id="east")  # fmt: skip
    assert [(c.action, c.kind) for c in plan.changes] == [("update", "ServiceExport")]
    written = replace(members[0].exported, exports=tuple(merged.statuses))
    again = merge([Member("east", written), members[1]], current=stored(merged.imports), now=60)
    rest = calculate_imports(again.imports, stored(merged.imports), again.statuses,
                             written.exports, cluster_id="east")  # fmt: skip
    assert rest.changes == () and rest.unchanged == 1
    assert all(c.last_transition == "1970-01-01T00:00:00Z" for c in again.statuses[0].conditions)


def test_a_new_import_is_planned_derived_service_first_and_without_ips() -> None:
    merged = merge([member("west", (export(), service()))])
    plan = calculate_imports(merged.imports, Imported(namespaces=NAMESPACES), cluster_id="east")
    assert [(c.action, c.kind) for c in plan.changes] == [
        ("create", "Service"), ("create", "ServiceImport"), ("create", "EndpointSlice")
    ]  # fmt: skip
    assert plan.changes[1].desired.ips == ()  # apply gives it the derived Service's


def test_an_unreachable_member_keeps_its_contribution_for_its_time() -> None:
    both = [member("east", (export(), service())), member("west", (export(), service()),
                                                           ips=("10.2.0.1",))]  # fmt: skip
    before = merge(both).imports
    away = [both[0], Member("west", None)]
    kept = merge(away, current=stored(before), now=100).imports[WEB]
    assert kept.service_import.clusters == ("east", "west")
    assert {s.meta.label(ownership.MCS_SOURCE_LABEL) for s in kept.slices} == {"east", "west"}
    assert "west" in (kept.service_import.meta.annotation(ownership.UNREACHABLE_ANNOTATION) or "")
    later = merge(away, current=stored({WEB: kept}), now=100 + HOUR + 1).imports[WEB]
    assert later.service_import.clusters == ("east",)
    assert {s.meta.label(ownership.MCS_SOURCE_LABEL) for s in later.slices} == {"east"}


def test_a_namespace_this_cluster_lacks_is_reported_not_imported_nor_created() -> None:
    merged = merge([member("west", (export(), service()))],
                   current=Imported(namespaces=frozenset()))  # fmt: skip
    assert merged.imports == {} and merged.absent == [WEB]
    plan = calculate_imports(merged.imports, Imported(), cluster_id="east",
                             untouchable=merged.absent)  # fmt: skip
    assert plan.changes == () and plan.absent == (WEB,)


def test_unexported_everywhere_goes_with_its_derived_service_and_slices_through_the_guard() -> None:
    names = [f"s{i}" for i in range(8)]
    exports = [(export(n), service(n)) for n in names]
    merged = merge([member("west", *exports)])
    current = stored(merged.imports)
    gone = merge([member("west")], current=current)
    plan = calculate_imports(gone.imports, current, cluster_id="east")
    assert plan.changes == () and "would delete 8 of 8 ServiceImports" in (plan.guard or "")
    allowed = calculate_imports(gone.imports, current, cluster_id="east",
                                policy=Policy(max_delete_ratio=1.0))  # fmt: skip
    assert sorted({c.kind for c in allowed.changes}) == ["EndpointSlice", "Service",
                                                         "ServiceImport"]  # fmt: skip
    assert all(c.action == "delete" for c in allowed.changes)
    upsert = calculate_imports(gone.imports, current, cluster_id="east",
                               policy=Policy(delete=False))  # fmt: skip
    assert upsert.changes == () and len({c.name for c in upsert.held}) == 8


def test_objects_of_another_cluster_set_owner_are_never_touched() -> None:
    merged = merge([member("west", (export(), service()))])
    theirs = stored(merged.imports)
    foreign = Imported(
        tuple(replace(i, meta=replace(i.meta, labels=((ownership.CLUSTER_SET_LABEL, "x"),)))
              for i in theirs.imports), namespaces=NAMESPACES)  # fmt: skip
    plan = calculate_imports({}, foreign, cluster_id="east", policy=Policy(max_delete_ratio=1))
    assert plan.changes == ()


worlds = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.tuples(st.booleans(), st.sampled_from([80, 81]), st.sets(st.sampled_from(["east", "west"]),
                                                                min_size=1)),
    max_size=5,
)  # fmt: skip


def members_of(spec) -> list[Member]:
    out = []
    for cluster in ("east", "west"):
        pairs = [(export(n), service(n, headless=h, ports=(("p", port, "TCP"),)))
                 for n, (h, port, where) in spec.items() if cluster in where]  # fmt: skip
        out.append(member(cluster, *pairs))
    return out


@given(worlds, worlds)
def test_one_plan_converges_any_set_to_any_other_and_then_rests(before_spec, after_spec) -> None:
    before = merge(members_of(before_spec)).imports
    after = merge(members_of(after_spec), current=stored(before)).imports
    plan = calculate_imports(after, stored(before), cluster_id="east",
                             policy=Policy(max_delete_ratio=1.0))  # fmt: skip
    for change in plan.changes:
        if change.action == "delete" and change.kind == "ServiceImport":
            assert change.remote not in after
    again = merge(members_of(after_spec), current=stored(after)).imports  # the next pass
    assert calculate_imports(again, stored(after), cluster_id="east").changes == ()


def test_a_condition_keeps_when_it_last_changed_while_its_status_stays() -> None:
    had = Condition("Conflict", "False", "NoConflicts", "the exported Services agree", 1,
                    "2020-01-01T00:00:00Z")  # fmt: skip
    ex = export(conditions=(had, Condition("Other", "True", "X", "someone else's")))
    merged = merge([member("east", (ex, service()))], now=1e9)
    status = {c.type: c for c in merged.statuses[0].conditions}
    assert status["Conflict"].last_transition == "2020-01-01T00:00:00Z"
    assert status["Valid"].last_transition == "2001-09-09T01:46:40Z"
    assert status["Other"].reason == "X"  # others' conditions are kept as they are


def test_a_member_away_rewrites_only_the_imports_it_was_part_of() -> None:
    members = [member("east", (export("a"), service("a"))),
               member("west", (export("b"), service("b")))]  # fmt: skip
    current = stored(merge(members, current=stored(merge(members).imports)).imports)
    away = merge([members[0], Member("west", None)], current=current, now=100)
    plan = calculate_imports(away.imports, current, cluster_id="east")
    assert {c.remote for c in plan.changes} == {Ref("shop", "b")}  # the record of west, on b
    assert plan.changes[0].reason == "annotations"
