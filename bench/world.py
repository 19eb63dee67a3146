"""The benchmark's world: N remote Services (two ports), each with an Endpoints object and an
EndpointSlice of the same three ready addresses, as a cluster's controllers keep both.

The Endpoints say `skip-mirror`: the slices are written here, so the remote's
EndpointSliceMirroring controller has nothing to add. Also the floor's view of a mirror:
the least transform from a remote object to its mirror body, so that the floor's creates
carry what ksm-sync's carry.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bench.raw import Json, Raw, run_all

NAMESPACES = 10
SELECTOR = "bench=yes"
PREFIX = "bench"
SEPARATOR = "6d6972726f720a"  # ksm_sync.naming.SEPARATOR, restated: the floor owes ksm-sync nothing
PORTS = (("http", 80, 8080), ("https", 443, 8443))
SLICES = "/apis/discovery.k8s.io/v1"


def remote_namespaces() -> list[str]:
    return [f"bench-{i}" for i in range(NAMESPACES)]


def _ip(index: int, offset: int = 244) -> str:
    return f"10.{offset}.{index // 250}.{index % 250 + 1}"


def _subsets(i: int, churned: bool = False) -> list[Json]:
    addresses = [{"ip": _ip(i * 3 + k)} for k in range(3)]
    if churned:
        addresses[2] = {"ip": _ip(i, offset=245)}
    ports = [{"name": name, "port": target, "protocol": "TCP"} for name, _, target in PORTS]
    return [{"addresses": addresses, "ports": ports}]


def where(i: int) -> tuple[str, str]:
    return remote_namespaces()[i % NAMESPACES], f"svc-{i:05d}"


def remote_service(i: int, headless: bool = False) -> Json:
    namespace, name = where(i)
    ports = [{"name": n, "port": p, "targetPort": t} for n, p, t in PORTS]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "yes"}},
        "spec": {"ports": ports, **({"clusterIP": "None"} if headless else {})},
    }


def remote_endpoints(i: int) -> Json:
    namespace, name = where(i)
    labels = {"bench": "yes", "endpointslice.kubernetes.io/skip-mirror": "true"}
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "subsets": _subsets(i),
    }


def _slice_body(i: int, churned: bool = False) -> Json:
    [subset] = _subsets(i, churned)
    return {
        "endpoints": [{"addresses": [a["ip"]], "conditions": {"ready": True}}
                      for a in subset["addresses"]],
        "ports": subset["ports"],
    }  # fmt: skip


def remote_slice(i: int) -> Json:
    namespace, name = where(i)
    labels = {"bench": "yes", "kubernetes.io/service-name": name,
              "endpointslice.kubernetes.io/managed-by": "ksm-bench"}  # fmt: skip
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": labels},
        "addressType": "IPv4",
        **_slice_body(i),
    }


def seed(remote: Raw, n: int, concurrency: int, headless: bool = False) -> None:
    """N Services with their Endpoints and slices, created concurrently (each in order);
    headless ones answer DNS with their endpoints."""
    for namespace in remote_namespaces():
        remote.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})

    def one(i: int) -> None:
        namespace, _ = where(i)
        remote.request(
            "POST", f"/api/v1/namespaces/{namespace}/services", remote_service(i, headless)
        )
        remote.request("POST", f"/api/v1/namespaces/{namespace}/endpoints", remote_endpoints(i))
        remote.request("POST", f"{SLICES}/namespaces/{namespace}/endpointslices", remote_slice(i))

    for _ in run_all(one, range(n), concurrency):
        pass


def churned(n: int) -> list[int]:
    """1% of the remote Endpoints, spread over the namespaces."""
    step = 100
    return list(range(0, n, step))


def churn(remote: Raw, n: int, concurrency: int) -> int:
    """Moves one address of 1% of the remote Endpoints; returns how many changed."""
    indexes = churned(n)

    def one(i: int) -> None:
        namespace, name = where(i)
        remote.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/endpoints/{name}",
            {"subsets": _subsets(i, churned=True)},
            content_type="application/merge-patch+json",
        )
        remote.request(
            "PATCH",
            f"{SLICES}/namespaces/{namespace}/endpointslices/{name}-1",
            _slice_body(i, churned=True),
            content_type="application/merge-patch+json",
        )

    for _ in run_all(one, indexes, concurrency):
        pass
    return len(indexes)


def prefix_of(index: int, remotes: int) -> str:
    """The prefix of the index-th remote: `bench` alone, `bench1`... among several."""
    return PREFIX if remotes == 1 else f"{PREFIX}{index + 1}"


def replace_endpoint(remote: Raw, i: int, ip: str) -> None:
    """The first endpoint of service i's slice gets a new IP: a pod replaced."""
    namespace, name = where(i)
    body = _slice_body(i)
    body["endpoints"][0]["addresses"] = [ip]
    remote.request("PATCH", f"{SLICES}/namespaces/{namespace}/endpointslices/{name}-1", body,
                   content_type="application/merge-patch+json")  # fmt: skip


def mirror_slice_name(mirror: str, remote_slice: str) -> str:
    """The name of the mirror's copy of a remote slice (ksm-sync's rule, restated)."""
    return f"{mirror}-{hashlib.sha256(remote_slice.encode()).hexdigest()[:10]}"


def mirror_bodies(
    service: Json, endpoints: Json | None, slices: list[Json], namespace: str, prefix: str
) -> list[Json]:
    """The mirror Service and its Endpoints or slices, as ksm-sync writes them."""
    meta = service["metadata"]
    name = f"{prefix}-{meta['name']}-{SEPARATOR}-{meta['namespace']}"
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"mirrored-svc": "true", "mirror-svc-prefix-sync": prefix},
        "annotations": {
            "ksm-sync/remote-namespace": meta["namespace"],
            "ksm-sync/remote-name": meta["name"],
        },
    }
    ports = [
        {k: p[k] for k in ("name", "port", "protocol", "targetPort") if k in p}
        for p in service["spec"]["ports"]
    ]
    bodies = [
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
         "spec": {"type": "ClusterIP", "ports": ports}}
    ]  # fmt: skip
    if endpoints is not None:
        bodies.append(
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata,
             "subsets": endpoints.get("subsets") or []}
        )  # fmt: skip
    for remote in slices:
        labels = {**metadata["labels"], "kubernetes.io/service-name": name,
                  "endpointslice.kubernetes.io/managed-by": "ksm-sync"}  # fmt: skip
        bodies.append(
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {**metadata, "name": mirror_slice_name(name, remote["metadata"]["name"]),
                          "labels": labels},
             "addressType": remote["addressType"],
             "endpoints": [{"addresses": e["addresses"], "conditions": e.get("conditions", {})}
                           for e in remote.get("endpoints") or ()],
             "ports": remote.get("ports") or []}
        )  # fmt: skip
    return bodies
