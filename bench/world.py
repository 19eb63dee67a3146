"""The benchmark's world: N remote Services (two ports) with Endpoints (three ready addresses).

Also the floor's view of a mirror: the least transform from a remote object to its mirror
body, so that the floor's creates carry what ksm-sync's carry.
"""

from __future__ import annotations

from typing import Any

from bench.raw import Json, Raw, run_all

NAMESPACES = 10
SELECTOR = "bench=yes"
PREFIX = "bench"
SEPARATOR = "6d6972726f720a"  # ksm_sync.naming.SEPARATOR, restated: the floor owes ksm-sync nothing
PORTS = (("http", 80, 8080), ("https", 443, 8443))


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


def _where(i: int) -> tuple[str, str]:
    return remote_namespaces()[i % NAMESPACES], f"svc-{i:05d}"


def remote_service(i: int) -> Json:
    namespace, name = _where(i)
    ports = [{"name": n, "port": p, "targetPort": t} for n, p, t in PORTS]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "yes"}},
        "spec": {"ports": ports},
    }


def remote_endpoints(i: int) -> Json:
    namespace, name = _where(i)
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "yes"}},
        "subsets": _subsets(i),
    }


def seed(remote: Raw, n: int, concurrency: int) -> None:
    """N Services and their Endpoints, created concurrently (each pair in order)."""
    for namespace in remote_namespaces():
        remote.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})

    def one(i: int) -> None:
        namespace, _ = _where(i)
        remote.request("POST", f"/api/v1/namespaces/{namespace}/services", remote_service(i))
        remote.request("POST", f"/api/v1/namespaces/{namespace}/endpoints", remote_endpoints(i))

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
        namespace, name = _where(i)
        remote.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/endpoints/{name}",
            {"subsets": _subsets(i, churned=True)},
            content_type="application/merge-patch+json",
        )

    for _ in run_all(one, indexes, concurrency):
        pass
    return len(indexes)


def mirror_bodies(service: Json, endpoints: Json | None, namespace: str) -> list[Json]:
    """The mirror Service (and Endpoints) of a remote Service, as ksm-sync writes them."""
    meta = service["metadata"]
    name = f"{PREFIX}-{meta['name']}-{SEPARATOR}-{meta['namespace']}"
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"mirrored-svc": "true", "mirror-svc-prefix-sync": PREFIX},
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
    return bodies
