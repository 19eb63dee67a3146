"""From Endpoints mirrors to EndpointSlices, watched through DNS while it happens.

A mirror namespace as kube-service-mirror (or ksm-sync in `--endpoints-api endpoints`) leaves
it answers DNS only through the local EndpointSliceMirroring controller, so these planes run
it (the session's local plane does not). The switch to slices must never leave a name
without its addresses: ksm-sync writes the slices before it deletes the Endpoints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import controlplane
from tests.support.cluster import Cluster
from tests.support.resolver import Resolver, addresses, answers_with
from tests.support.workloads import wait_for, wait_slices
from tests.support.world import World

NAMES = ("web", "api", "db")


@pytest.fixture(scope="module")
def mirroring_planes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, Cluster]]]:
    root = tmp_path_factory.mktemp("mirroring-planes")
    try:
        started = controlplane.up(root, die_with_parent=True)  # EndpointSliceMirroring on both
        yield root, {name: Cluster(plane) for name, plane in started.items()}
    finally:
        controlplane.down(root)


def ips(i: int) -> set[str]:
    return {f"10.7.{i}.1", f"10.7.{i}.2"}


def test_endpoints_mirrors_become_slices_without_a_moment_unanswered(
    mirroring_planes: tuple[Path, dict[str, Cluster]],
) -> None:
    root, planes = mirroring_planes
    world = World.new(planes["remote"], planes["local"], endpoints_api="endpoints")
    for i, name in enumerate(NAMES):
        world.service(name, clusterIP="None")
        world.endpoints(name, [{"addresses": [{"ip": ip} for ip in sorted(ips(i))],
                                "ports": [{"name": "http", "port": 80}]}])  # fmt: skip
    for i, name in enumerate(NAMES):  # the remote's own slices, for the slices pass to read
        wait_slices(world.remote, world.remote_ns, name, ips(i))
    assert world.run().returncode == 0  # Endpoints mirrors, as kube-service-mirror made them
    address = controlplane.dns(
        root, svc_prefix=world.prefix, mirror_ns=world.mirror_ns,
        die_with_parent=True,
    )  # fmt: skip
    host, port = address.rsplit(":", 1)
    resolver = Resolver(host, int(port), f"cluster.{world.prefix}")
    for i, name in enumerate(NAMES):
        resolver.wait(resolver.name(name, world.remote_ns), "A", answers_with(ips(i)))

    answers: list[tuple[str, frozenset[str]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for name in NAMES:
                asked = resolver.name(name, world.remote_ns)
                answers.append((name, frozenset(addresses(resolver.ask(asked)))))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        time.sleep(0.5)
        migrated = world.run("--endpoints-api", "endpointslices")
        assert migrated.returncode == 0, migrated.stderr
        wait_for("the mirroring controller's slices gone, only ksm-sync's left",
                 lambda: all(_managers(world, n) == {"ksm-sync"} for n in NAMES))  # fmt: skip
        time.sleep(1.0)  # and CoreDNS has seen it
    finally:
        stop.set()
        watcher.join(timeout=10)

    assert world.mirrors("Endpoints") == {}
    wrong = [(name, sorted(got)) for name, got in answers
             if got != ips(NAMES.index(name))]  # fmt: skip
    print(f"\n{len(answers)} answers while migrating, {len(wrong)} not the full set")
    assert len(answers) > 30 and wrong == []


def _managers(world: World, name: str) -> set[str]:
    selector = f"kubernetes.io/service-name={world.mirror_name(name)}"
    slices = world.local.list("EndpointSlice", world.mirror_ns, selector)
    return {s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] for s in slices}
