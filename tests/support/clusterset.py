"""Two members of a cluster set, as a test sees them: `east` (the `local` plane) and `west` (the
`remote` plane, dual-stack), each with a config file making it a member and the other its
remote, and ksm-sync run through its CLI for either.

Each test gets its own namespace in both clusters. The cluster set spans every namespace, so
a test's leftovers would be the next one's: `clean` unexports everything and lets each member
take its imports down.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import run_cli
from tests.support.cluster import Cluster, HttpError, Json

MCS = "/apis/multicluster.x-k8s.io/v1beta1"
MEMBERS = ("east", "west")


@dataclass
class SetWorld:
    east: Cluster
    west: Cluster
    namespace: str
    dir: Path

    @classmethod
    def new(cls, local: Cluster, remote: Cluster, dir: Path) -> SetWorld:
        namespace = f"set-{secrets.token_hex(4)}"
        for cluster in (local, remote):
            cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        world = cls(local, remote, namespace, dir)
        for member in MEMBERS:
            world.write_config(member)
        return world

    def cluster(self, member: str) -> Cluster:
        return self.east if member == "east" else self.west

    def config(self, member: str) -> Path:
        return self.dir / f"{member}.yaml"

    def write_config(self, member: str, **extra: Any) -> Path:
        """`member`'s --config: the other member is its one remote (JSON is YAML)."""
        (other,) = (m for m in MEMBERS if m != member)
        config = {
            "clusterSet": {"clusterID": member},
            "local": {"kubeconfig": self.cluster(member).kubeconfig},
            "remotes": [{"name": other, "kubeconfig": self.cluster(other).kubeconfig}],
            **extra,
        }
        self.config(member).write_text(json.dumps(config))
        return self.config(member)

    def run(self, member: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["once", "--config", str(self.config(member)), *extra])

    def sync(self) -> None:
        """One pass of each member, each of which must succeed."""
        for member in MEMBERS:
            result = self.run(member)
            assert result.returncode == 0, f"{member}:\n{result.stderr}"

    def export(self, member: str, name: str, **spec: Any) -> Json:
        body = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                "metadata": {"name": name, "namespace": self.namespace}, "spec": spec}  # fmt: skip
        path = f"{MCS}/namespaces/{self.namespace}/serviceexports"
        return self.cluster(member).request("POST", path, body)

    def unexport(self, member: str, name: str) -> None:
        path = f"{MCS}/namespaces/{self.namespace}/serviceexports/{name}"
        self.cluster(member).request("DELETE", path)

    def service_import(self, member: str, name: str) -> Json | None:
        path = f"{MCS}/namespaces/{self.namespace}/serviceimports/{name}"
        try:
            return self.cluster(member).request("GET", path)
        except HttpError as error:
            if error.status == 404:
                return None
            raise

    def conditions(self, member: str, name: str) -> dict[str, tuple[str, str]]:
        path = f"{MCS}/namespaces/{self.namespace}/serviceexports/{name}"
        export = self.cluster(member).request("GET", path)
        return {c["type"]: (c["status"], c["reason"])
                for c in (export.get("status") or {}).get("conditions") or ()}  # fmt: skip

    def mcs_slices(self, member: str, name: str) -> list[Json]:
        selector = f"multicluster.kubernetes.io/service-name={name}"
        return self.cluster(member).list("EndpointSlice", self.namespace, selector)

    def writes(self, member: str) -> list[Json]:
        """ksm-sync's write requests in this world's namespace of member's cluster."""
        events = []
        for event in self.cluster(member).audit():
            ref = event.get("objectRef") or {}
            if (
                ref.get("namespace") == self.namespace
                and event.get("verb") in ("create", "update", "patch", "delete")
                and str(event.get("userAgent", "")).startswith("ksm-sync/")
            ):
                events.append(event)
        return events

    def clean(self) -> None:
        """Unexports everything of this world, takes the imports down, deletes the namespace."""
        for member in MEMBERS:
            path = f"{MCS}/namespaces/{self.namespace}/serviceexports"
            for export in self.cluster(member).request("GET", path)["items"]:
                self.unexport(member, export["metadata"]["name"])
        for member in MEMBERS:
            self.write_config(member, maxDeleteRatio=1)
            self.run(member)
        for member in MEMBERS:
            self.cluster(member).request("DELETE", f"/api/v1/namespaces/{self.namespace}")
