"""One test's private corner of the control planes, and the CLI pointed at it.

Each test gets its own remote namespace, its own label selector (remote lists span all
namespaces, so the selector is what keeps tests apart), its own mirror namespace and
prefix. Tests therefore run in any order, and in parallel under pytest-xdist.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from typing import Any

from tests.support.cli import run_cli
from tests.support.cluster import Cluster, Json, endpoint_slice, endpoints, service


@dataclass
class World:
    remote: Cluster
    local: Cluster
    remote_ns: str
    mirror_ns: str
    label: str
    prefix: str
    # Most tests write remote Endpoints by hand and check the mirrors' Endpoints: they run in
    # kube-service-mirror's mode. The EndpointSlice and DNS tests use the default, slices.
    endpoints_api: str = "endpoints"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(cls, remote: Cluster, local: Cluster, endpoints_api: str = "endpoints") -> World:
        tag = secrets.token_hex(3)
        return cls(
            remote=remote,
            local=local,
            remote_ns=remote.create_namespace("remote"),
            mirror_ns=local.create_namespace("mirrors"),
            label=f"mirror-{tag}",
            prefix=f"p{tag}",
            endpoints_api=endpoints_api,
        )

    @property
    def selector(self) -> str:
        return f"{self.label}=yes"

    def service(self, name: str, namespace: str | None = None, **kwargs: Any) -> Json:
        kwargs.setdefault("labels", {self.label: "yes"})
        return self.remote.apply(service(namespace or self.remote_ns, name, **kwargs))

    def endpoints(self, name: str, subsets: list[Json], namespace: str | None = None) -> Json:
        obj = endpoints(namespace or self.remote_ns, name, subsets, labels={self.label: "yes"})
        return self.remote.apply(obj)

    def slice(self, service: str, name: str, endpoints: list[Json], **kwargs: Any) -> Json:
        """A remote EndpointSlice of service, labelled to be mirrored."""
        kwargs.setdefault("labels", {self.label: "yes"})
        obj = endpoint_slice(self.remote_ns, service, name, endpoints, **kwargs)
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
            "--endpoints-api", self.endpoints_api,
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
