"""Fixtures: real control planes for the session, and a private corner of them per test.

Each test gets its own remote namespace, its own label selector (remote lists span all
namespaces, so the selector is what keeps tests apart), its own mirror namespace and
prefix. Tests therefore run in any order, and in parallel under pytest-xdist, where each
worker starts its own pair of control planes.
"""

from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import controlplane
from tests.support.cluster import Cluster, Json, endpoints, service

CLI_TIMEOUT = 180


@pytest.fixture(scope="session")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cluster]]:
    root = tmp_path_factory.mktemp("clusters")
    atexit.register(controlplane.down, root)  # Ctrl-C or a crash between fixtures
    try:
        started = controlplane.up(root, die_with_parent=True)
        yield {name: Cluster(plane) for name, plane in started.items()}
    finally:
        controlplane.down(root)


@pytest.fixture(scope="session")
def remote(planes: dict[str, Cluster]) -> Cluster:
    return planes["remote"]


@pytest.fixture(scope="session")
def local(planes: dict[str, Cluster]) -> Cluster:
    return planes["local"]


@dataclass
class World:
    """One test's corner of the two clusters, and the CLI pointed at it."""

    remote: Cluster
    local: Cluster
    remote_ns: str
    mirror_ns: str
    label: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def selector(self) -> str:
        return f"{self.label}=yes"

    def service(self, name: str, namespace: str | None = None, **kwargs: Any) -> Json:
        kwargs.setdefault("labels", {self.label: "yes"})
        return self.remote.apply(service(namespace or self.remote_ns, name, **kwargs))

    def endpoints(self, name: str, subsets: list[Json], namespace: str | None = None) -> Json:
        obj = endpoints(namespace or self.remote_ns, name, subsets, labels={self.label: "yes"})
        return self.remote.apply(obj)

    def mirror_name(
        self, name: str, namespace: str | None = None, prefix: str | None = None
    ) -> str:
        return f"{prefix or self.prefix}-{name}-6d6972726f720a-{namespace or self.remote_ns}"

    def args(self) -> list[str]:
        return [
            "--target-kube-config", self.remote.kubeconfig,
            "--kube-config", self.local.kubeconfig,
            "--mirror-ns", self.mirror_ns,
            "--label-selector", self.selector,
            "--svc-prefix", self.prefix,
        ]  # fmt: skip

    def run(
        self,
        *extra: str,
        command: str = "once",
        defaults: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the real CLI; defaults=False passes only extra (for option tests)."""
        argv = [command, *(self.args() if defaults else []), *extra]
        return run_cli(argv, env={**self.env, **(env or {})})

    def mirrors(self, kind: str = "Service") -> dict[str, Json]:
        selector = f"mirrored-svc=true,mirror-svc-prefix-sync={self.prefix}"
        return {o["metadata"]["name"]: o for o in self.local.list(kind, self.mirror_ns, selector)}

    def writes(self) -> list[Json]:
        return self.local.writes(self.mirror_ns)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI run: this one, less anything that could pick credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSM_") and k != "KUBECONFIG"}
    env["HOME"] = "/nonexistent"  # no ~/.kube/config by accident
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env["KSM_LISTEN_ADDRESS"] = "127.0.0.1:0"  # loops of parallel tests must not share :8080
    return {**env, **(extra or {})}


def run_cli(
    argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ksm_sync", *argv],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        **kwargs,
    )


def start_cli(
    argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    """The real CLI in the background (for `loop`); the caller stops it."""
    return subprocess.Popen(
        [sys.executable, "-m", "ksm_sync", *argv],
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture
def world(remote: Cluster, local: Cluster) -> World:
    tag = secrets.token_hex(3)
    return World(
        remote=remote,
        local=local,
        remote_ns=remote.create_namespace("remote"),
        mirror_ns=local.create_namespace("mirrors"),
        label=f"mirror-{tag}",
        prefix=f"p{tag}",
    )


REPO = Path(__file__).resolve().parents[1]
