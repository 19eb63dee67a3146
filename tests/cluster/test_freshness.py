"""How stale a mirror can be in `loop`: at most one resync period plus one pass.

Passes start on a fixed beat (a period from the start of the last), so a remote change made at
any moment, in the middle of a pass included, is in the mirror by the end of the next pass.
The local writes go through a proxy that answers them late, so that passes with work last
long enough for changes to land inside them.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, Json
from tests.support.faultproxy import FaultProxy, Request, through
from tests.support.loop import LoopRun
from tests.support.observability import free_port, scrape, value
from tests.support.world import World

PERIOD = 2.0
SERVICES = 40
CHANGES = 12
SLACK = 0.5  # the watcher's poll and one API round trip


@pytest.fixture
def world(remote: Cluster, local: Cluster) -> World:
    return World.new(remote, local, endpoints_api="endpointslices")


def endpoints(ip: str) -> list[Json]:
    return [{"addresses": [ip], "conditions": {"ready": True}}]


def test_a_remote_change_shows_within_one_period_and_one_pass(world: World, tmp_path: Path) -> None:
    for i in range(SERVICES):
        world.service(f"s{i:02d}")
        world.slice(f"s{i:02d}", f"s{i:02d}-1", endpoints(f"10.5.0.{i + 1}"))
    seen: dict[int, float] = {}  # change -> wall time its IP was in the mirror
    made: dict[int, float] = {}  # change -> wall time it was made remotely
    rng = random.Random(16)

    def slow_writes(request: Request) -> str | None:
        return "slow" if request.method != "GET" else None

    with FaultProxy(world.local.plane, seed=16) as proxy:
        proxy.plan, proxy.slow_seconds = slow_writes, 0.25
        run = LoopRun([*through(world, tmp_path, local=proxy), "--resync-period", "2s",
                       "--concurrency", "1"])  # fmt: skip
        try:
            run.wait_for(lambda: any(p.quiet for p in run.snapshot()), 120, "a quiet pass")
            watchers = []
            for change, index in enumerate(rng.sample(range(SERVICES), CHANGES)):
                time.sleep(rng.uniform(0, PERIOD))
                service = f"s{index:02d}"  # one change per service: each IP is to be seen
                ip = f"10.6.0.{change + 1}"
                made[change] = time.time()
                world.slice(service, f"{service}-1", endpoints(ip))
                watcher = threading.Thread(
                    target=_watch, args=(world, service, ip, change, seen), daemon=True
                )
                watcher.start()
                watchers.append(watcher)
            for watcher in watchers:
                watcher.join(timeout=60)
        finally:
            assert run.stop() == 0, run.tail()

    passes = _passes(run)
    # The passes a change could wait for: those that started at most a period before it.
    passes = [(start, end) for start, end in passes if start > min(made.values()) - PERIOD]
    longest = max(end - start for start, end in passes)
    delays = {c: seen[c] - made[c] for c in made if c in seen}
    mid_pass = [c for c in made if any(start < made[c] < end for start, end in passes)]
    print(f"\ndelays {sorted(round(d, 2) for d in delays.values())}, longest pass "
          f"{longest:.2f}s, {len(mid_pass)} changes made mid-pass")  # fmt: skip
    assert len(delays) == CHANGES, f"changes never seen: {set(made) - set(delays)}"
    assert max(delays.values()) <= PERIOD + longest + SLACK
    assert mid_pass, "no change landed inside a pass: the test proves less than it says"


def test_passes_longer_than_the_period_follow_at_once_and_the_beat_does_not_drift(
    world: World, tmp_path: Path
) -> None:
    """Local lists answered 1.5 s late make every pass outlast a 1 s period: each pass starts
    as the last ends, never beside it, with a warning, and the duration histogram shows it.
    Lists answered 0.15 s late make passes shorter than the period again: they start a period
    apart, not a period plus a pass."""
    world.service("s00")
    world.slice("s00", "s00-1", endpoints("10.5.0.1"))

    def slow_lists(request: Request) -> str | None:
        return "slow" if request.method == "GET" else None

    url = f"http://127.0.0.1:{free_port()}"
    with FaultProxy(world.local.plane, seed=3) as proxy:
        proxy.plan, proxy.slow_seconds = slow_lists, 1.5
        run = LoopRun([*through(world, tmp_path, local=proxy), "--resync-period", "1s",
                       "--listen-address", url[7:]])  # fmt: skip
        try:
            run.wait_passes(4, 120)
            during = scrape(url)
            overran = len(_passes(run))
            proxy.slow_seconds = 0.15
            run.wait_passes(7, 120)
        finally:
            assert run.stop() == 0, run.tail()

    passes = _passes(run)
    long, short = passes[:overran], passes[overran + 1 :]  # the pass of the switch is neither
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(long)]
    beats = [b[0] - a[0] for a, b in itertools.pairwise(short)]
    print(f"\nafter long passes the next started {[round(g, 2) for g in gaps]}s after; "
          f"passes of {[round(e - s, 2) for s, e in short]}s started "
          f"{[round(b, 2) for b in beats]}s apart")  # fmt: skip
    assert all(end - start > 1.0 for start, end in long)
    assert all(-0.05 <= gap <= 0.3 for gap in gaps), "a pass waited, or ran beside another"
    warnings = [m for m in run.messages("warning") if "longer than --resync-period 1s" in m]
    assert len(warnings) >= len(long)
    assert value(during, "ksm_sync_resync_period_seconds") == 1.0
    count = value(during, "ksm_sync_pass_duration_seconds_count")
    assert count and value(during, "ksm_sync_pass_duration_seconds_bucket", le="1.0") == 0
    assert all(0.3 < end - start < 1.0 for start, end in short)
    assert all(0.95 <= beat <= 1.15 for beat in beats), "the beat drifts by the passes' length"


def _passes(run: LoopRun) -> list[tuple[float, float]]:
    """(start, end), in wall seconds, of every pass that ran."""
    return [(_at(line) - line["duration_seconds"], _at(line)) for line in list(run.lines)
            if str(line.get("message", "")).startswith("pass done")]  # fmt: skip


def _watch(world: World, service: str, ip: str, change: int, seen: dict[int, float]) -> None:
    deadline = time.monotonic() + 60
    selector = f"kubernetes.io/service-name={world.mirror_name(service)}"
    while time.monotonic() < deadline:
        for found in world.local.list("EndpointSlice", world.mirror_ns, selector):
            if any(ip in e["addresses"] for e in found.get("endpoints") or ()):
                seen[change] = time.time()
                return
        time.sleep(0.1)


def _at(line: Json) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()
