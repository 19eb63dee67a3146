"""A bad network on either side: ksm-sync retries, converges, and never acts on a partial list.

Every test points the real CLI at a fault proxy in front of a real API server.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import mirrors
from tests.support.faultproxy import FaultProxy, Request, through
from tests.support.loop import LoopRun
from tests.support.world import World

SUBSETS = [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 80}]}]


def pass_seconds(stderr: str) -> float:
    """How long the failed pass itself took, by its own account (start-up not included)."""
    match = re.search(r"pass could not run after ([\d.]+)s", stderr)
    assert match, stderr
    return float(match.group(1))


def state(world: World) -> tuple[dict, dict]:
    """(expected mirrors from the remote as it is now, the mirrors as they are)."""
    want = mirrors.expected(
        world.remote.list("Service", world.remote_ns, world.selector),
        world.remote.list("Endpoints", world.remote_ns, world.selector),
        world.prefix,
    )
    have = mirrors.actual(list(world.mirrors().values()), list(world.mirrors("Endpoints").values()))
    return want, have


def subsets(i: int, count: int = 2) -> list[dict]:
    addresses = [{"ip": f"10.1.{i % 250}.{n + 1}"} for n in range(count)]
    return [{"addresses": addresses, "ports": [{"name": "http", "port": 80}]}]


def populate(world: World, names: list[str]) -> None:
    for i, name in enumerate(names):
        world.service(name, **({"clusterIP": "None"} if i % 5 == 0 else {}))
        world.endpoints(name, subsets(i))


def changed_remote(world: World, count: int = 20) -> tuple[set[str], set[str]]:
    """Mirrors `count` services, then changes the remote: 3 gone, 10 new, 3 with new ports,
    3 with new endpoints. Returns (names of remotes that exist, mirror names that must go)."""
    names = [f"svc-{i:02d}" for i in range(count)]
    populate(world, names)
    assert world.run().returncode == 0
    gone = names[:3]
    for name in gone:
        world.remote.delete("Service", world.remote_ns, name)  # the API server drops its Endpoints
    populate(world, [f"new-{i:02d}" for i in range(10)])
    for name in names[3:6]:
        world.service(name, ports=[{"name": "http", "port": 80}, {"name": "admin", "port": 9000}])
    for i, name in enumerate(names[6:9]):
        world.endpoints(name, subsets(100 + i, count=3))
    remotes = {s["metadata"]["name"] for s in world.remote.list("Service", world.remote_ns)}
    return remotes, {world.mirror_name(n) for n in gone}


@pytest.fixture
def proxies(world: World) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    with FaultProxy(world.remote.plane, seed=1) as r, FaultProxy(world.local.plane, seed=2) as lo:
        yield r, lo


@pytest.mark.parametrize("sides", ["remote", "local", "both"])
def test_loop_converges_with_20_percent_of_requests_faulted(
    world: World, tmp_path: Path, proxies: tuple[FaultProxy, FaultProxy], sides: str
) -> None:
    remotes, must_go = changed_remote(world, 40)
    remote_proxy, local_proxy = proxies
    for proxy, side in ((remote_proxy, "remote"), (local_proxy, "local")):
        proxy.page_limit = 5  # lists come in pages, so continue tokens exist to expire
        proxy.stall_seconds = 2.5
        if sides in (side, "both"):
            proxy.rate = 0.2
    writes_before = len(world.writes())
    run = LoopRun([*through(world, tmp_path, remote=remote_proxy, local=local_proxy),
                   "--resync-period", "300ms", "--request-timeout", "1s",
                   "--pass-timeout", "30s"])  # fmt: skip
    try:

        def converged() -> bool:
            want, have = state(world)
            return want == have and any(p.quiet for p in run.snapshot())

        took = run.wait_for(converged, 150, "exactly the right mirrors, then a quiet pass")
        first_quiet = next(i for i, p in enumerate(run.snapshot()) if p.quiet) + 1
        settled = len(run.snapshot())
        run.wait_passes(4, 120)  # faults go on: a settled loop must stay put
        passes = run.snapshot()
    finally:
        assert run.stop() == 0
    faulty = [p for p, side in ((remote_proxy, "remote"), (local_proxy, "local"))
              if sides in (side, "both")]  # fmt: skip
    counts = sum((p.counts for p in faulty), Counter())
    total, faulted = counts.total(), counts.total() - counts["forwarded"]
    print(f"\n[{sides}] {faulted}/{total} requests faulted ({faulted / total:.0%}): "
          f"{dict(counts)}; first quiet pass: {first_quiet}, then {len(passes) - settled} more "
          f"({sum(not p.ran for p in passes)} could not run); "
          f"converged in {took:.1f}s")  # fmt: skip
    assert faulted > 0
    assert first_quiet <= 6, [p.message for p in passes]
    assert all(p.quiet or not p.ran for p in passes[settled:]), [p.message for p in passes]
    want, have = state(world)
    assert want == have, mirrors.diff(want, have)
    deleted = {e["objectRef"]["name"] for e in world.writes()[writes_before:]
               if e["verb"] == "delete"}  # fmt: skip
    existing = {world.mirror_name(n) for n in remotes}
    assert not deleted & existing, f"deleted mirrors of existing remotes: {deleted & existing}"
    assert must_go <= deleted


LIST_FAULTS = [
    ("remote", "services", "500"),
    ("remote", "endpoints", "truncate"),
    ("remote", "services", "expire"),
    ("remote", "endpoints", "reset"),
    ("local", "services", "truncate"),
    ("local", "endpoints", "503"),
    ("local", "services", "expire"),
    ("local", "endpoints", "stall"),
]


@pytest.mark.parametrize(("side", "resource", "fault"), LIST_FAULTS)
def test_a_list_that_fails_or_is_cut_short_changes_nothing(
    world: World,
    tmp_path: Path,
    proxies: tuple[FaultProxy, FaultProxy],
    side: str,
    resource: str,
    fault: str,
) -> None:
    changed_remote(world)  # creates, updates and deletes are all due
    proxy = proxies[0] if side == "remote" else proxies[1]
    proxy.rate, proxy.faults, proxy.page_limit, proxy.stall_seconds = 1.0, (fault,), 4, 3
    proxy.match = lambda r: r.verb == "list" and r.resource == resource
    writes_before = len(world.writes())
    started = time.monotonic()
    args = through(world, tmp_path, remote=proxies[0], local=proxies[1])
    result = world.run(*args, "--pass-timeout", "8s", "--request-timeout", "1s", defaults=False)
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "pass could not run" in result.stderr
    assert f"{side} API server" in result.stderr
    assert world.writes()[writes_before:] == []
    assert proxy.counts[fault] >= 1
    assert pass_seconds(result.stderr) <= 8 + 1
    assert elapsed < 60  # wall clock: CLI start-up on a busy machine included


def test_retry_after_is_honoured(world: World, tmp_path: Path, proxies) -> None:
    world.service("api")
    world.endpoints("api", SUBSETS)
    remote_proxy, _ = proxies
    seen: list[Request] = []

    def plan(request: Request) -> str | None:
        if request.verb == "list" and request.resource == "services":
            seen.append(request)
            return "429" if len(seen) <= 3 else None
        return None

    remote_proxy.plan, remote_proxy.retry_after = plan, "1"
    result = world.run(*through(world, tmp_path, remote=remote_proxy), defaults=False)
    assert result.returncode == 0, result.stderr
    lists = remote_proxy.requests("list", "services")
    assert [r.status for r in lists] == [429, 429, 429, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(lists)]
    print(f"\ngaps after 429 Retry-After: 1 -> {[f'{g:.2f}' for g in gaps]}")
    assert all(1.0 <= g < 2.5 for g in gaps), gaps
    assert set(world.mirrors()) == {world.mirror_name("api")}


def test_retries_back_off_exponentially_with_jitter(world: World, tmp_path: Path, proxies) -> None:
    """Full jitter: the n-th wait is uniform in [0, 0.2s * 2^(n-1)], never the bare cap."""
    world.service("api")
    remote_proxy, _ = proxies
    failures: dict[str, int] = {}

    def plan(request: Request) -> str | None:
        if request.verb != "list":
            return None
        failures[request.resource] = failures.get(request.resource, 0) + 1
        return "503" if failures[request.resource] <= 5 else None

    remote_proxy.plan = plan
    result = world.run(*through(world, tmp_path, remote=remote_proxy), "--pass-timeout", "60s",
                       defaults=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    ratios = []
    for resource in ("services", "endpoints"):
        lists = remote_proxy.requests("list", resource)
        assert [r.status for r in lists] == [503] * 5 + [200]
        for attempt, (a, b) in enumerate(itertools.pairwise(lists), start=1):
            cap = 0.2 * 2 ** (attempt - 1)
            assert b.at - a.at <= cap + 1.5, (resource, attempt, b.at - a.at)
            ratios.append((b.at - a.at) / cap)
    print(f"\nwait / cap per retry: {[f'{r:.2f}' for r in ratios]}")
    assert any(r < 0.9 for r in ratios), "every wait was the full backoff: no jitter"
    assert len({round(r, 2) for r in ratios}) > 5, "waits do not vary"


@pytest.mark.parametrize("dead", ["stall", "retry-after-past-deadline", "connection-refused"])
def test_a_dead_remote_cannot_hang_a_cronjob(
    world: World, tmp_path: Path, proxies, dead: str
) -> None:
    world.service("api")
    remote_proxy, _ = proxies
    remote_proxy.rate, remote_proxy.stall_seconds = 1.0, 120
    remote_proxy.faults = ("stall",) if dead == "stall" else ("429",)
    remote_proxy.retry_after = "25"
    args = through(world, tmp_path, remote=remote_proxy)
    if dead == "connection-refused":
        remote_proxy.stop()  # nothing listens there any more
    started = time.monotonic()
    result = world.run(*args, "--pass-timeout", "4s", defaults=False)
    elapsed = time.monotonic() - started
    print(f"\n{dead}: pass gave up after {pass_seconds(result.stderr):.1f}s (--pass-timeout 4s), "
          f"{elapsed:.1f}s with CLI start-up")  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "remote API server" in result.stderr
    assert pass_seconds(result.stderr) <= 4 + 1  # the deadline, and the last request's 0.5s
    assert elapsed < 60
    assert world.mirrors() == {}


def test_loop_rides_out_a_dead_remote_and_recovers(
    world: World, tmp_path: Path, proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    world.service("api")
    world.endpoints("api", SUBSETS)
    remote_proxy, _ = proxies
    remote_proxy.rate, remote_proxy.faults, remote_proxy.stall_seconds = 1.0, ("stall",), 60
    run = LoopRun([*through(world, tmp_path, remote=remote_proxy), "--resync-period", "200ms",
                   "--pass-timeout", "2s"])  # fmt: skip
    try:
        run.wait_for(lambda: sum(not p.ran for p in run.snapshot()) >= 2, 30, "2 failed passes")
        failed = [p for p in run.snapshot() if not p.ran]
        assert all("remote API server" in p.message for p in failed)
        remote_proxy.rate = 0.0
        run.wait_for(lambda: world.mirror_name("api") in world.mirrors(), 30, "recovery")
    finally:
        assert run.stop() == 0


def test_a_connection_closed_mid_handshake_is_retried(
    world: World, tmp_path: Path, proxies
) -> None:
    """An API server restarting, or a load balancer without backends, closes during TLS."""
    world.service("api")
    remote_proxy, local_proxy = proxies
    remote_proxy.drop_handshakes = local_proxy.drop_handshakes = 2
    result = world.run(*through(world, tmp_path, remote=remote_proxy, local=local_proxy),
                       defaults=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert remote_proxy.counts["eof-handshake"] == local_proxy.counts["eof-handshake"] == 2
    assert "retrying" in result.stderr and "EOF" in result.stderr
    assert world.mirror_name("api") in world.mirrors()


def test_a_certificate_that_does_not_verify_is_not_retried(
    world: World, tmp_path: Path, proxies
) -> None:
    remote_proxy, _ = proxies
    args = through(world, tmp_path, remote=remote_proxy)
    kubeconfig = Path(args[args.index("--target-kube-config") + 1])
    wrong_ca = str(world.remote.plane.ca_file)  # the API server's CA, not the proxy's
    kubeconfig.write_text(kubeconfig.read_text().replace(str(remote_proxy.ca.ca_file), wrong_ca))
    result = world.run(*args, defaults=False)
    assert result.returncode == 3, result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr or "certificate verify" in result.stderr
    assert "retrying" not in result.stderr
    assert remote_proxy.log == []
