"""Overlapping runs: one prefix twice converges without thrashing; other prefixes stay untouched."""

from __future__ import annotations

import concurrent.futures
import time

from tests.support import mirrors
from tests.support.faultproxy import FaultProxy, Request
from tests.support.loop import LoopRun
from tests.support.world import World

SUBSETS = [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 80}]}]


def with_prefix(world: World, prefix: str) -> list[str]:
    args = world.args()
    args[args.index("--svc-prefix") + 1] = prefix
    return args


def populate(world: World, count: int) -> list[str]:
    names = [f"svc-{i:02d}" for i in range(count)]
    for i, name in enumerate(names):
        world.service(name, **({"clusterIP": "None"} if i % 4 == 0 else {}))
        world.endpoints(name, [{"addresses": [{"ip": f"10.3.0.{i + 1}"}],
                                "ports": [{"name": "http", "port": 80}]}])  # fmt: skip
    return names


def state(world: World, prefix: str | None = None) -> tuple[dict, dict]:
    prefix = prefix or world.prefix
    want = mirrors.expected(
        world.remote.list("Service", world.remote_ns, world.selector),
        world.remote.list("Endpoints", world.remote_ns, world.selector),
        prefix,
    )
    selector = f"mirrored-svc=true,mirror-svc-prefix-sync={prefix}"
    have = mirrors.actual(
        world.local.list("Service", world.mirror_ns, selector),
        world.local.list("Endpoints", world.mirror_ns, selector),
    )
    return want, have


def versions(world: World, names: set[str] | None = None) -> dict[tuple[str, str], str]:
    """resourceVersion of every Service and Endpoints in the mirror namespace (or of names)."""
    return {
        (kind, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for kind in ("Service", "Endpoints")
        for o in world.local.list(kind, world.mirror_ns)
        if names is None or o["metadata"]["name"] in names
    }


def test_two_onces_at_the_same_time_converge_without_errors(world: World) -> None:
    populate(world, 40)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: world.run(), range(2)))

    for result in results:
        assert result.returncode == 0, result.stderr
        assert "failed" not in result.stderr.replace("failed=0", "")
        assert " ERROR " not in result.stderr
    want, have = state(world)
    assert want == have, mirrors.diff(want, have)
    creates = [e for e in world.writes() if e["verb"] == "create"]
    assert 80 <= len(creates) <= 160  # each object created once; a loser's try meets 409
    writes = len(world.writes())
    third = world.run()
    assert third.returncode == 0 and "unchanged=40" in third.stderr
    assert len(world.writes()) == writes


def test_two_loops_with_one_prefix_settle_and_stop_writing(world: World) -> None:
    names = populate(world, 30)
    argv = [*world.args(), "--resync-period", "200ms"]
    loops = [LoopRun(argv), LoopRun(argv)]
    try:
        for run in loops:
            run.wait_for(lambda run=run: any(p.ran for p in run.snapshot()), 60, "a first pass")
        # The remote changes while both run: ports, endpoints, type flips, deletions, additions.
        for i, name in enumerate(names[:12]):
            if i % 4 == 0:
                world.remote.delete("Service", world.remote_ns, name)
            elif i % 4 == 1:
                world.service(name, ports=[{"name": "http", "port": 80}, {"name": "m", "port": 9}])
            elif i % 4 == 2:
                world.endpoints(name, [{"addresses": [{"ip": "10.9.9.9"}],
                                        "ports": [{"name": "http", "port": 80}]}])  # fmt: skip
            else:
                world.remote.delete("Service", world.remote_ns, name)
                world.service(name, clusterIP="None")
                world.endpoints(name, SUBSETS)
            time.sleep(0.05)
        for i in range(5):
            world.service(f"late-{i}")

        def settled() -> bool:
            want, have = state(world)
            return want == have and all(run.snapshot()[-1].quiet for run in loops)

        took = loops[0].wait_for(settled, 90, "both loops settled on the right mirrors")
        writes = len(world.writes())
        for run in loops:
            run.wait_passes(5, 60)
        assert len(world.writes()) == writes, "writes after settling: thrashing"
    finally:
        codes = [run.stop() for run in loops]
    assert codes == [0, 0]
    for run in loops:
        errors = [m for m in run.messages("error")]
        assert errors == [], errors
        conflicts = [m for m in run.messages("warning") if "conflict" in m]
        assert conflicts == [], conflicts
    raced = sum(p.counts.get("raced", 0) for run in loops for p in run.snapshot())
    print(f"\ntwo loops settled {took:.1f}s after the changes; raced mirrors: {raced}; "
          f"passes: {[len(run.snapshot()) for run in loops]}")  # fmt: skip


def test_other_prefixes_in_the_namespace_are_never_touched(world: World) -> None:
    names = populate(world, 8)
    other = world.prefix + "x"
    assert world.run(*with_prefix(world, other), defaults=False).returncode == 0
    theirs = versions(world)
    assert len(theirs) == 16
    audit_mark = len(world.writes())

    assert world.run().returncode == 0  # ours: created next to theirs
    world.remote.delete("Service", world.remote_ns, names[0])
    world.service(names[1], ports=[{"name": "http", "port": 81}])
    world.remote.delete("Service", world.remote_ns, names[2])
    world.service(names[2], clusterIP="None")
    assert world.run().returncode == 0  # ours: delete, update, recreate
    everything = [*world.args(), "--max-delete-ratio", "1"]
    everything[everything.index("--label-selector") + 1] = "nothing=here"
    assert world.run(*everything, defaults=False).returncode == 0  # ours: all deleted

    assert world.mirrors() == {}
    assert versions(world, {n for _, n in theirs}) == theirs
    touched = {e["objectRef"]["name"] for e in world.writes()[audit_mark:]}
    assert not touched & {n for _, n in theirs}


def test_two_loops_with_different_prefixes_share_a_namespace(world: World) -> None:
    populate(world, 10)
    other = world.prefix + "x"
    loops = [LoopRun([*world.args(), "--resync-period", "200ms"]),
             LoopRun([*with_prefix(world, other), "--resync-period", "200ms"])]  # fmt: skip
    try:
        for prefix, run in zip((world.prefix, other), loops, strict=True):

            def done(prefix: str = prefix, run: LoopRun = run) -> bool:
                want, have = state(world, prefix)
                return want == have and bool(run.snapshot()) and run.snapshot()[-1].quiet

            run.wait_for(done, 60, f"prefix {prefix} converged")
        writes = len(world.writes())
        for run in loops:
            run.wait_passes(3, 30)
        assert len(world.writes()) == writes
    finally:
        assert [run.stop() for run in loops] == [0, 0]


def test_a_name_taken_by_another_prefix_is_a_conflict_left_alone(world: World) -> None:
    """Prefix p's mirror of `a-web` and prefix p-a's mirror of `web` share one name."""
    world.service("web")
    world.service("a-web")
    other = f"{world.prefix}-a"
    assert world.mirror_name("a-web") == world.mirror_name("web", prefix=other)
    assert world.run(*with_prefix(world, other), defaults=False).returncode == 0
    theirs = versions(world, {world.mirror_name("a-web")})

    result = world.run()

    assert result.returncode == 1, result.stderr
    assert f"conflict on Service {world.mirror_name('a-web')}" in result.stderr
    assert versions(world, {world.mirror_name("a-web")}) == theirs
    assert world.mirror_name("web") in world.mirrors()


def test_a_mirror_deleted_between_observe_and_write_is_a_race_not_a_failure(
    world: World, tmp_path
) -> None:
    """Another ksm-sync recreating the Service (which drops its Endpoints) mid-pass."""
    world.service("web")
    world.endpoints("web", SUBSETS)
    assert world.run().returncode == 0
    world.endpoints(
        "web", [{"addresses": [{"ip": "10.7.7.7"}], "ports": [{"name": "http", "port": 80}]}]
    )
    name = world.mirror_name("web")

    def meanwhile(request: Request) -> None:
        if request.verb == "patch" and request.resource == "endpoints":
            world.local.delete("Service", world.mirror_ns, name)  # its Endpoints go with it
        return None

    with FaultProxy(world.local.plane, plan=meanwhile) as proxy:
        args = world.args()
        args[args.index("--kube-config") + 1] = proxy.write_kubeconfig(
            tmp_path / "local.kubeconfig"
        )
        result = world.run(*args, defaults=False)
    assert result.returncode == 0, result.stderr
    assert "raced=1" in result.stderr and "failed=0" in result.stderr
    assert world.run().returncode == 0  # the next pass puts it back
    want, have = state(world)
    assert want == have, mirrors.diff(want, have)
