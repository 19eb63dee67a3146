"""Global services merged across clusters, with plain values: each cluster's own slices."""

from __future__ import annotations

from dataclasses import replace

from ksm_sync import ownership
from ksm_sync.merge import Source, desired_global
from ksm_sync.mirror import Mirror
from ksm_sync.model import EndpointSlice, Meta, Ref, Service, ServicePort, slice_from_api
from ksm_sync.observe import Objects
from ksm_sync.plan import Policy, calculate
from ksm_sync.settings import Target

TARGET = Target("global", "mirrors")
HOUR = 3600.0


def service(ports: tuple[int, ...] = (80,), name: str = "web") -> Service:
    return Service(Meta(Ref("shop", name)), "ClusterIP", True,
                   tuple(ServicePort("", "TCP", p, p) for p in ports))  # fmt: skip


def a_slice(ip: str, name: str = "web-1", service_name: str = "web") -> EndpointSlice:
    return slice_from_api({
        "metadata": {"name": name, "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4", "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
    })  # fmt: skip


def cluster(ip: str | None, *, ports: tuple[int, ...] = (80,)) -> Objects:
    """A cluster that has shop/web with one endpoint ip (None: it does not have shop/web)."""
    if ip is None:
        return Objects()
    return Objects(services=(service(ports),), slices=(a_slice(ip),))


NOTHING = Objects()


def merge(sources: list[Source], current: Objects = NOTHING, now: float = 0.0):
    return desired_global(sources, current, TARGET, now=now, unreachable_after=HOUR)


def stored(mirrors: dict[str, Mirror]) -> Objects:
    """What the local API server holds once the mirrors are written."""
    services = tuple(
        replace(m.service, meta=replace(m.service.meta, uid="u")) for m in mirrors.values()
    )
    return Objects(services=services, slices=tuple(s for m in mirrors.values() for s in m.slices))


def sources_of(mirror: Mirror) -> dict[str, list[tuple[str, ...]]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for s in mirror.slices:
        cluster = s.meta.label(ownership.SOURCE_LABEL) or "?"
        out.setdefault(cluster, []).extend(e.addresses for e in s.endpoints)
    return out


def test_one_mirror_with_the_slices_of_every_cluster_that_has_the_service() -> None:
    mirrors, skips, warnings = merge([Source("east", cluster("10.1.0.1")),
                                      Source("west", cluster("10.2.0.1"))])  # fmt: skip
    [mirror] = mirrors.values()
    assert mirror.name == "global-web-6d6972726f720a-shop" and skips == [] and warnings == []
    assert sources_of(mirror) == {"east": [("10.1.0.1",)], "west": [("10.2.0.1",)]}
    assert len({s.meta.ref.name for s in mirror.slices}) == 2  # names differ per cluster


def test_a_cluster_whose_service_goes_takes_only_its_own_slices() -> None:
    both = merge([Source("east", cluster("10.1.0.1")), Source("west", cluster("10.2.0.1"))])[0]
    after = merge([Source("east", cluster("10.1.0.1")), Source("west", cluster(None))],
                  stored(both))[0]  # fmt: skip
    assert sources_of(after["global-web-6d6972726f720a-shop"]) == {"east": [("10.1.0.1",)]}
    plan = calculate(after, stored(both).services, (), prefix="global", slices=stored(both).slices)
    assert [(c.action, c.kind) for c in plan.changes] == [("delete", "EndpointSlice")]
    assert [c.current.meta.label(ownership.SOURCE_LABEL) for c in plan.changes] == ["west"]


def test_an_unreachable_cluster_keeps_its_slices_until_its_time_is_up() -> None:
    both = merge([Source("east", cluster("10.1.0.1")), Source("west", cluster("10.2.0.1"))])[0]
    gone_at = 1_000_000.0
    first = merge([Source("east", cluster("10.1.0.1")), Source("west", None)], stored(both),
                  now=gone_at)[0]  # fmt: skip
    [mirror] = first.values()
    assert set(sources_of(mirror)) == {"east", "west"}
    # When it was first missed is recorded on the Service: the next pass, even another
    # process (a CronJob), counts from it.
    assert "west" in (mirror.service.meta.annotation(ownership.UNREACHABLE_ANNOTATION) or "")
    later = merge([Source("east", cluster("10.1.0.1")), Source("west", None)], stored(first),
                  now=gone_at + HOUR - 1)[0]  # fmt: skip
    assert set(sources_of(later["global-web-6d6972726f720a-shop"])) == {"east", "west"}
    expired = merge([Source("east", cluster("10.1.0.1")), Source("west", None)], stored(later),
                    now=gone_at + HOUR + 1)[0]  # fmt: skip
    assert set(sources_of(expired["global-web-6d6972726f720a-shop"])) == {"east"}
    still = merge([Source("east", cluster("10.1.0.1")), Source("west", None)], stored(expired),
                  now=gone_at + HOUR + 60)[0]  # fmt: skip
    current = stored(expired)  # once expired, it stays so: no writes while it stays away
    plan = calculate(still, current.services, (), prefix="global", slices=current.slices)
    assert plan.changes == ()
    back = merge([Source("east", cluster("10.1.0.1")), Source("west", cluster("10.2.0.1"))],
                 stored(expired), now=gone_at + 2 * HOUR)[0]  # fmt: skip
    [mirror] = back.values()
    assert set(sources_of(mirror)) == {"east", "west"}
    assert mirror.service.meta.annotation(ownership.UNREACHABLE_ANNOTATION) == "{}"


def test_an_unchanged_world_plans_nothing_even_while_a_cluster_is_away() -> None:
    both = merge([Source("east", cluster("10.1.0.1")), Source("west", cluster("10.2.0.1"))])[0]
    first = merge([Source("east", cluster("10.1.0.1")), Source("west", None)], stored(both),
                  now=5.0)[0]  # fmt: skip
    again = merge([Source("east", cluster("10.1.0.1")), Source("west", None)], stored(first),
                  now=60.0)[0]  # fmt: skip
    current = stored(first)
    plan = calculate(again, current.services, (), prefix="global", slices=current.slices)
    assert plan.changes == ()


def test_differing_ports_are_reported_and_the_first_cluster_sets_them() -> None:
    mirrors, _, warnings = merge([Source("east", cluster("10.1.0.1", ports=(80,))),
                                  Source("west", cluster("10.2.0.1", ports=(8080,)))])  # fmt: skip
    [mirror] = mirrors.values()
    assert [p.port for p in mirror.service.ports] == [80]
    assert len(warnings) == 1 and "west" in warnings[0] and "east's is mirrored" in warnings[0]
    assert set(sources_of(mirror)) == {"east", "west"}


def test_nobody_has_it_any_more_and_it_is_stale() -> None:
    both = merge([Source("east", cluster("10.1.0.1"))])[0]
    none = merge([Source("east", cluster(None))], stored(both))[0]
    assert none == {}
    plan = calculate(none, stored(both).services, (), prefix="global",
                     policy=Policy(), slices=stored(both).slices)  # fmt: skip
    assert sorted(c.kind for c in plan.changes) == ["EndpointSlice", "Service"]


def test_a_service_only_an_unreachable_cluster_has_stays_for_its_time() -> None:
    """Even with no endpoints to show that the cluster had it (an ExternalName, say)."""
    external = Service(Meta(Ref("shop", "db")), "ExternalName", False, (), "db.example.com")
    before = merge([Source("east", Objects(services=(external,)))])[0]
    away = merge([Source("east", None)], stored(before), now=100.0)[0]
    assert list(away) == ["global-db-6d6972726f720a-shop"]
    gone = merge([Source("east", None)], stored(away), now=100.0 + HOUR + 1)[0]
    assert gone == {}


def test_the_shape_stays_while_a_cluster_ahead_is_away_and_follows_the_next_after() -> None:
    """Issue 20: east (first) has a headless Service, west a ClusterIP one. east missing one
    pass used to recreate the mirror as west's (a new cluster IP, NXDOMAIN meanwhile), and
    again when east came back."""
    headless = replace(service(), headless=True)
    clusterip = replace(service(ports=(8080,)), headless=False)
    east = Objects(services=(headless,), slices=(a_slice("10.1.0.1"),))
    west = Objects(services=(clusterip,), slices=(a_slice("10.2.0.1"),))
    both = merge([Source("east", east), Source("west", west)])[0]
    [mirror] = both.values()
    assert mirror.service.headless
    away = merge([Source("east", None), Source("west", west)], stored(both), now=10.0)[0]
    current = stored(both)
    plan = calculate(away, current.services, (), prefix="global", slices=current.slices)
    assert [(c.action, c.kind) for c in plan.changes] == [("update", "Service")]  # the record
    assert plan.changes[0].reason == "remote annotations"
    expired = merge([Source("east", None), Source("west", west)], stored(away),
                    now=10.0 + HOUR + 1)[0]  # fmt: skip
    assert not expired["global-web-6d6972726f720a-shop"].service.headless  # west's, now


def test_two_services_with_one_global_mirror_name_are_a_conflict() -> None:
    """Issue 20: a name or namespace holding the separator maps two Services to one name;
    the second used to overwrite the first silently."""
    one = Service(Meta(Ref("shop", "x-6d6972726f720a-a")), "ClusterIP", False, ())
    two = Service(Meta(Ref("a-6d6972726f720a-shop", "x")), "ClusterIP", False, ())
    mirrors, skips, _ = merge([Source("east", Objects(services=(one,))),
                               Source("west", Objects(services=(two,)))])  # fmt: skip
    assert mirrors == {}
    assert {s.remote for s in skips} == {one.meta.ref, two.meta.ref}
    assert all("conflict" in s.reason for s in skips)
