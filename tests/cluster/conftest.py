"""Fixtures of the cluster lane: real control planes for the session, a World per test.

Under pytest-xdist each worker starts its own control planes.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest

from tests.support import controlplane
from tests.support.cluster import Cluster
from tests.support.world import World


@pytest.fixture(scope="session")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cluster]]:
    root = tmp_path_factory.mktemp("clusters")
    atexit.register(controlplane.down, root)  # Ctrl-C or a crash between fixtures
    try:
        # Every plane runs the controllers of a real cluster, EndpointSliceMirroring
        # included: a controller turned off would hide every fight with it. Two remotes, for
        # the tests of several remotes in one pass; the Multi-Cluster Services CRDs in all.
        started = controlplane.up(root, remotes=2, die_with_parent=True, mcs=True)
        yield {name: Cluster(plane) for name, plane in started.items()}
    finally:
        controlplane.down(root)


@pytest.fixture(scope="session")
def remote(planes: dict[str, Cluster]) -> Cluster:
    return planes["remote"]


@pytest.fixture(scope="session")
def remote2(planes: dict[str, Cluster]) -> Cluster:
    return planes["remote2"]


@pytest.fixture(scope="session")
def local(planes: dict[str, Cluster]) -> Cluster:
    return planes["local"]


@pytest.fixture
def world(remote: Cluster, local: Cluster) -> World:
    return World.new(remote, local)
