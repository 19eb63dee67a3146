"""The floor: ksm-sync's requests, sent by the minimal client with nothing on top.

Lists are read one after the other, as ksm-sync reads them; creates run mirror by mirror
(Service, then its Endpoints or slices) on as many threads as ksm-sync's --concurrency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.raw import Json, Raw, run_all
from bench.world import PREFIX, SELECTOR, SLICES, mirror_bodies

OWNED = f"mirrored-svc=true,mirror-svc-prefix-sync={PREFIX}"


@dataclass(frozen=True)
class Lists:
    seconds: float
    cpu_seconds: float  # this process's, which does nothing else meanwhile
    remote_services: list[Json]
    remote_endpoints: list[Json]
    remote_slices: list[Json]


def lists(remote: Raw, local: Raw, namespace: str, page_size: int, endpoints_api: str) -> Lists:
    """The lists of a pass: remote Services and their Endpoints or slices; the local mirrors
    in namespace with both their Endpoints and slices."""
    started, cpu = time.monotonic(), time.process_time()
    services = remote.list_all("/api/v1/services", SELECTOR, page_size)
    endpoints, slices = [], []
    if endpoints_api == "endpoints":
        endpoints = remote.list_all("/api/v1/endpoints", SELECTOR, page_size)
    else:
        slices = remote.list_all(f"{SLICES}/endpointslices", SELECTOR, page_size)
    local.list_all(f"/api/v1/namespaces/{namespace}/services", OWNED, page_size)
    local.list_all(f"/api/v1/namespaces/{namespace}/endpoints", OWNED, page_size)
    local.list_all(f"{SLICES}/namespaces/{namespace}/endpointslices", OWNED, page_size)
    elapsed = time.monotonic() - started
    return Lists(elapsed, time.process_time() - cpu, services, endpoints, slices)


@dataclass(frozen=True)
class Cold:
    seconds: float
    cpu_seconds: float
    list_seconds: float
    create_seconds: float
    creates: int


def cold(
    remote: Raw, local: Raw, namespace: str, page_size: int, concurrency: int, endpoints_api: str
) -> Cold:
    """Lists, then every mirror created into namespace (empty), as ksm-sync's cold pass."""
    started, cpu = time.monotonic(), time.process_time()
    seen = lists(remote, local, namespace, page_size, endpoints_api)

    def ref(obj: Json) -> tuple[str, str]:
        return obj["metadata"]["namespace"], obj["metadata"]["name"]

    endpoints = {ref(e): e for e in seen.remote_endpoints}
    slices: dict[tuple[str, str], list[Json]] = {}
    for s in seen.remote_slices:
        service = (
            s["metadata"]["namespace"],
            s["metadata"]["labels"]["kubernetes.io/service-name"],
        )
        slices.setdefault(service, []).append(s)
    groups = [
        mirror_bodies(s, endpoints.get(ref(s)), slices.get(ref(s), []), namespace)
        for s in seen.remote_services
    ]
    creating = time.monotonic()
    paths = {
        "Service": f"/api/v1/namespaces/{namespace}/services",
        "Endpoints": f"/api/v1/namespaces/{namespace}/endpoints",
        "EndpointSlice": f"{SLICES}/namespaces/{namespace}/endpointslices",
    }

    def one(bodies: list[Json]) -> int:
        for body in bodies:
            local.request("POST", paths[body["kind"]], body)
        return len(bodies)

    creates = sum(run_all(one, groups, concurrency))  # type: ignore[arg-type]
    done = time.monotonic()
    return Cold(done - started, time.process_time() - cpu, seen.seconds, done - creating, creates)
