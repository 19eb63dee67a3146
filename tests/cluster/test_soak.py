"""Soak: `loop` over a few hundred services while the remote changes at random and the network
fails at random; at the end the mirrors are exactly right and nothing unowned was touched.

Bounded for CI: about a minute of churn, then up to 90 seconds to settle (typically seconds).
Seeds are fixed, so a failure replays the same faults and (timing aside) the same changes.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import mirrors
from tests.support.cluster import HttpError, Json
from tests.support.faultproxy import FaultProxy
from tests.support.loop import LoopRun
from tests.support.world import World

SERVICES = 250
CHURN_SECONDS = 60
SETTLE_SECONDS = 90
FAULT_RATE = 0.1
SEED = 20261125


@dataclass
class Remote:
    """The driver's model of one remote Service: enough to rewrite it whole."""

    kind: str  # "cip", "headless" or "ext"
    port: int
    endpoints: int  # addresses; 0: no Endpoints object
    labelled: bool = True


@dataclass
class Driver:
    """Changes the remote at random, and remembers which mirrors may rightly be deleted."""

    world: World
    rng: random.Random
    model: dict[str, Remote] = field(default_factory=dict)
    may_delete: set[str] = field(default_factory=set)  # mirror names
    changes: Counter[str] = field(default_factory=Counter)
    serial: int = 0

    def spec(self, r: Remote) -> dict[str, Any]:
        spec: dict[str, Any] = {"ports": [{"name": "http", "port": r.port}]}
        if r.kind == "headless":
            spec["clusterIP"] = "None"
        if r.kind == "ext":
            spec.update(type="ExternalName", externalName=f"e{r.port}.example.com")
        return spec

    def write(self, name: str, *, replace: bool = False) -> None:
        r = self.model[name]
        w = self.world
        if replace:
            _ignore_404(lambda: w.remote.delete("Service", w.remote_ns, name))
        labels = {w.label: "yes"} if r.labelled else {"other": "x"}
        w.service(name, labels=labels, **self.spec(r))
        if r.endpoints and r.kind != "ext":
            w.endpoints(name, [{"addresses": [{"ip": f"10.20.{r.port % 250}.{i + 1}"}
                                              for i in range(r.endpoints)],
                                "ports": [{"name": "http", "port": r.port}]}])  # fmt: skip
        elif not r.endpoints:
            _ignore_404(lambda: w.remote.delete("Endpoints", w.remote_ns, name))

    def new(self, name: str) -> None:
        roll = self.rng.random()
        kind = "ext" if roll < 0.05 else "headless" if roll < 0.15 else "cip"
        endpoints = 0 if self.rng.random() < 0.05 else self.rng.randint(1, 3)
        self.model[name] = Remote(kind, self.rng.randint(1, 60000), endpoints)
        self.write(name)

    def step(self) -> None:
        action = self.rng.choice(["add", "delete", "ports", "endpoints", "endpoints", "flip",
                                  "unlabel", "relabel", "no-endpoints"])  # fmt: skip
        names = sorted(self.model)
        name = self.rng.choice(names)
        r = self.model[name]
        mirror = self.world.mirror_name(name)
        if action == "add":
            self.serial += 1
            self.new(f"n{self.serial:04d}")
        elif action == "delete":
            self.world.remote.delete("Service", self.world.remote_ns, name)
            del self.model[name]
            self.may_delete.add(mirror)
        elif action == "ports":
            r.port = self.rng.randint(1, 60000)
            self.write(name)
        elif action == "endpoints" and r.kind != "ext":
            r.endpoints = self.rng.randint(1, 4)
            self.write(name)
        elif action == "no-endpoints" and r.endpoints:
            r.endpoints = 0
            self.write(name)
            self.may_delete.add(mirror)  # its Endpoints mirror goes
        elif action == "flip":
            r.kind = {"cip": "headless", "headless": "ext", "ext": "cip"}[r.kind]
            self.write(name, replace=True)
            self.may_delete.add(mirror)  # a type change is a recreate
        elif action == "unlabel" and r.labelled:
            r.labelled = False
            self.write(name)
            self.may_delete.add(mirror)
        elif action == "relabel" and not r.labelled:
            r.labelled = True
            self.write(name)
        else:
            return
        self.changes[action] += 1


def _ignore_404(call: Any) -> None:
    try:
        call()
    except HttpError as error:
        if error.status != 404:
            raise


def unowned(world: World, other: str) -> list[Json]:
    """Objects in the mirror namespace that ksm-sync must never modify."""
    m = world.mirror_name
    owned_by_other = {"mirrored-svc": "true", "mirror-svc-prefix-sync": other}
    specs: list[tuple[str, str, dict[str, str]]] = [
        ("Service", m("ghost-1"), {}),  # looks like a stale mirror, has no labels
        ("Service", m("ghost-2"), {"mirrored-svc": "true"}),  # one of the two labels
        ("Service", m("ghost-3"), {"mirror-svc-prefix-sync": world.prefix}),
        ("Endpoints", m("ghost-4"), {"mirrored-svc": "false",
                                     "mirror-svc-prefix-sync": world.prefix}),
        ("Service", m("s0007"), {}),  # takes the name of a real mirror: a conflict
        *[(kind, m(f"s{i:04d}", prefix=other), owned_by_other)
          for i in range(5) for kind in ("Service", "Endpoints")],
        *[(kind, m(f"gone-{i}", prefix=other), owned_by_other)
          for i in range(3) for kind in ("Service", "Endpoints")],
    ]  # fmt: skip
    objects = []
    for kind, name, labels in specs:
        meta = {"name": name, "namespace": world.mirror_ns, "labels": labels}
        if kind == "Service":
            obj = {"apiVersion": "v1", "kind": kind, "metadata": meta,
                   "spec": {"ports": [{"name": "http", "port": 80}]}}  # fmt: skip
        else:
            subsets = [{"addresses": [{"ip": "10.99.0.1"}], "ports": [{"port": 80}]}]
            obj = {"apiVersion": "v1", "kind": kind, "metadata": meta, "subsets": subsets}
        objects.append(world.local.create(obj))
    return objects


@pytest.mark.soak
def test_soak_loop_over_random_changes_and_faults(world: World, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    driver = Driver(world, rng)
    with ThreadPoolExecutor(6) as pool:
        names = [f"s{i:04d}" for i in range(SERVICES)]
        for name in names:  # the model first (seeded, in order), then the writes in parallel
            roll = rng.random()
            kind = "ext" if roll < 0.05 else "headless" if roll < 0.15 else "cip"
            endpoints = 0 if rng.random() < 0.05 else rng.randint(1, 3)
            driver.model[name] = Remote(kind, rng.randint(1, 60000), endpoints)
        list(pool.map(driver.write, names))
    other = world.prefix + "o"
    guarded = unowned(world, other)
    versions = {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
                for o in guarded}  # fmt: skip
    conflict = world.mirror_name("s0007")

    with (
        FaultProxy(world.remote.plane, seed=SEED + 1, rate=FAULT_RATE, page_limit=60,
                   stall_seconds=2) as remote_proxy,
        FaultProxy(world.local.plane, seed=SEED + 2, rate=FAULT_RATE, page_limit=60,
                   stall_seconds=2) as local_proxy,
    ):  # fmt: skip
        args = world.args()
        args[args.index("--target-kube-config") + 1] = remote_proxy.write_kubeconfig(
            tmp_path / "remote.kubeconfig"
        )
        args[args.index("--kube-config") + 1] = local_proxy.write_kubeconfig(
            tmp_path / "local.kubeconfig"
        )
        started = time.monotonic()
        run = LoopRun([*args, "--resync-period", "500ms", "--request-timeout", "1s",
                       "--pass-timeout", "30s", "--concurrency", "8"])  # fmt: skip
        try:
            run.wait_for(lambda: any(p.ran for p in run.snapshot()), 120, "a first full pass")
            first_pass = time.monotonic() - started
            churn_end = time.monotonic() + CHURN_SECONDS
            while time.monotonic() < churn_end:
                driver.step()
                time.sleep(rng.uniform(0.02, 0.3))
            churn_passes = len(run.snapshot())

            def settled() -> bool:
                want, have = current(world, conflict)
                last = run.snapshot()[-1]
                return want == have and last.ran and last.writes == 0

            settle = run.wait_for(settled, SETTLE_SECONDS, "mirrors equal the remote")
        finally:
            code = run.stop()
        counts = remote_proxy.counts + local_proxy.counts

    assert code == 0, run.tail()
    want, have = current(world, conflict)
    assert want == have, mirrors.diff(want, have)
    now = {(kind, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
           for kind in ("Service", "Endpoints") for o in world.local.list(kind, world.mirror_ns)
           if (kind, o["metadata"]["name"]) in versions}  # fmt: skip
    assert now == versions, "an object ksm-sync does not own was modified or deleted"
    modified = {e["objectRef"]["name"] for e in world.writes()
                if e["verb"] in ("update", "patch", "delete")}  # fmt: skip
    assert not modified & {name for _, name in versions}
    deleted = {e["objectRef"]["name"] for e in world.writes() if e["verb"] == "delete"}
    assert deleted <= driver.may_delete, f"deleted, remote there: {deleted - driver.may_delete}"

    passes = run.snapshot()
    failed = [p for p in passes if not p.ran]
    total = counts.total()
    print(
        f"\nsoak: {SERVICES} services, {sum(driver.changes.values())} remote changes "
        f"{dict(driver.changes)} over {CHURN_SECONDS}s; faults {total - counts['forwarded']}/"
        f"{total} requests ({(total - counts['forwarded']) / total:.1%}) {dict(counts)}; "
        f"{len(passes)} passes ({len(failed)} could not run, {churn_passes} by end of churn); "
        f"first full pass {first_pass:.1f}s; settled {settle:.1f}s after the churn; "
        f"{len(want)} mirrors"
    )


def current(world: World, conflict: str) -> tuple[dict, dict]:
    want = mirrors.expected(
        world.remote.list("Service", world.remote_ns, world.selector),
        world.remote.list("Endpoints", world.remote_ns, world.selector),
        world.prefix,
    )
    want.pop(conflict, None)  # its name is taken by an object that is not ours
    have = mirrors.actual(list(world.mirrors().values()), list(world.mirrors("Endpoints").values()))
    return want, have
