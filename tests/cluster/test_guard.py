"""The mass-deletion guard and --policy, through the CLI: a wrong remote list deletes nothing."""

from __future__ import annotations

from tests.support.cluster import Cluster
from tests.support.world import World

SUBSETS = [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 80}]}]


def mirrored(world: World, count: int) -> list[str]:
    names = [f"svc-{i:02d}" for i in range(count)]
    for name in names:
        world.service(name)
        world.endpoints(name, SUBSETS)
    assert world.run().returncode == 0
    assert len(world.mirrors()) == count
    return names


def typo(world: World) -> list[str]:
    """The world's arguments with a label selector that matches nothing (a typo)."""
    args = world.args()
    args[args.index("--label-selector") + 1] = world.selector.replace("mirror-", "mirorr-")
    return args


def test_a_selector_typo_deletes_nothing_and_says_why(world: World) -> None:
    mirrored(world, 10)
    writes = len(world.writes())

    result = world.run(*typo(world), defaults=False)

    assert result.returncode == 1, result.stderr
    assert "deletion guard: would delete 10 of 10 mirrors" in result.stderr
    assert "--max-delete-ratio" in result.stderr and "label selector typo" in result.stderr
    assert "held=10" in result.stderr
    assert len(world.mirrors()) == 10 and len(world.mirrors("Endpoints")) == 10
    assert world.writes()[writes:] == []


def test_the_user_can_allow_a_mass_delete(world: World) -> None:
    mirrored(world, 10)
    result = world.run(*typo(world), "--max-delete-ratio", "1", defaults=False)
    assert result.returncode == 0, result.stderr
    assert world.mirrors() == {} and world.mirrors("Endpoints") == {}


def test_the_guard_trips_above_the_ratio_and_not_at_it(world: World) -> None:
    names = mirrored(world, 10)
    for name in names[:6]:
        world.remote.delete("Service", world.remote_ns, name)
    world.service("fresh")  # creates and updates still go ahead while deletes are held
    world.service(names[9], ports=[{"name": "http", "port": 8080}])

    held = world.run()

    assert held.returncode == 1, held.stderr
    assert "would delete 6 of 10 mirrors, more than --max-delete-ratio 0.5" in held.stderr
    mirrors = world.mirrors()
    assert len(mirrors) == 11 and world.mirror_name("fresh") in mirrors
    assert mirrors[world.mirror_name(names[9])]["spec"]["ports"][0]["port"] == 8080

    world.service(names[0])  # 5 of 11 to go: not more than half
    world.endpoints(names[0], SUBSETS)
    allowed = world.run()
    assert allowed.returncode == 0, allowed.stderr
    assert "deleted=5" in allowed.stderr
    assert set(world.mirrors()) == {world.mirror_name(n) for n in [*names[6:], names[0], "fresh"]}


def test_a_handful_of_mirrors_is_below_the_guard(world: World) -> None:
    """With 5 mirrors or fewer the guard stays out of the way: deleting them all is allowed."""
    mirrored(world, 5)
    result = world.run(*typo(world), defaults=False)
    assert result.returncode == 0, result.stderr
    assert world.mirrors() == {}


def test_upsert_only_never_deletes_but_creates_and_updates(world: World) -> None:
    names = mirrored(world, 3)
    world.remote.delete("Service", world.remote_ns, names[0])
    world.service(names[1], ports=[{"name": "http", "port": 8080}])
    world.service("fresh")

    result = world.run("--policy", "upsert-only")

    assert result.returncode == 0, result.stderr
    assert "created=1 updated=1 recreated=0 deleted=0" in result.stderr
    assert "held=1" in result.stderr
    mirrors = world.mirrors()
    assert set(mirrors) == {world.mirror_name(n) for n in [*names, "fresh"]}
    assert world.mirror_name(names[0]) in world.mirrors("Endpoints")
    assert not [e for e in world.writes() if e["verb"] == "delete"]


def test_upsert_only_with_a_selector_typo_is_a_quiet_no_op(world: World) -> None:
    mirrored(world, 10)
    writes = len(world.writes())
    result = world.run(*typo(world), "--policy", "upsert-only", defaults=False)
    assert result.returncode == 0, result.stderr
    assert "deletion guard" not in result.stderr and "held=10" in result.stderr
    assert world.writes()[writes:] == []


def test_upsert_only_deletes_no_slice_and_no_endpoints_and_says_what_it_holds(
    remote: Cluster, local: Cluster
) -> None:
    """Issue 20: upsert-only deleted a mirror's slice whose remote slice went, and the kind
    that the other replaces, though the README said it never deletes anything."""
    world = World.new(remote, local, endpoints_api="endpointslices")
    world.service("web")
    for i in (1, 2):
        world.slice("web", f"web-{i}", [{"addresses": [f"10.1.0.{i}"], "conditions": {}}])
    assert world.run().returncode == 0
    world.remote.delete("EndpointSlice", world.remote_ns, "web-2")

    gone = world.run("--policy", "upsert-only")

    assert gone.returncode == 0, gone.stderr
    assert "held=1" in gone.stderr and "--policy upsert-only deletes nothing" in gone.stderr
    assert len(own_slices(world)) == 2
    world.endpoints("web", SUBSETS)
    world.endpoints_api = "endpoints"

    swapped = world.run("--policy", "upsert-only")

    assert swapped.returncode == 0, swapped.stderr
    assert "held=1" in swapped.stderr
    assert world.mirror_name("web") in world.mirrors("Endpoints")
    assert len(own_slices(world)) == 2
    assert not [e for e in world.writes() if e["verb"] == "delete"]


def own_slices(world: World) -> list[str]:
    """ksm-sync's slices (in Endpoints mode the mirroring controller makes some of its own)."""
    return [
        name
        for name, s in world.mirrors("EndpointSlice").items()
        if s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "ksm-sync"
    ]
