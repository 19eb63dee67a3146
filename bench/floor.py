"""The floor: ksm-sync's requests, sent by the minimal client with nothing on top.

Lists are read one after the other, as ksm-sync reads them; creates run mirror by mirror
(Service, then Endpoints) on as many threads as ksm-sync's --concurrency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.raw import Json, Raw, run_all
from bench.world import PREFIX, SELECTOR, mirror_bodies

OWNED = f"mirrored-svc=true,mirror-svc-prefix-sync={PREFIX}"


@dataclass(frozen=True)
class Lists:
    seconds: float
    cpu_seconds: float  # this process's, which does nothing else meanwhile
    remote_services: list[Json]
    remote_endpoints: list[Json]


def lists(remote: Raw, local: Raw, namespace: str, page_size: int) -> Lists:
    """The four lists of a pass: remote Services and Endpoints, local mirrors in namespace."""
    started, cpu = time.monotonic(), time.process_time()
    services = remote.list_all("/api/v1/services", SELECTOR, page_size)
    endpoints = remote.list_all("/api/v1/endpoints", SELECTOR, page_size)
    local.list_all(f"/api/v1/namespaces/{namespace}/services", OWNED, page_size)
    local.list_all(f"/api/v1/namespaces/{namespace}/endpoints", OWNED, page_size)
    return Lists(time.monotonic() - started, time.process_time() - cpu, services, endpoints)


@dataclass(frozen=True)
class Cold:
    seconds: float
    cpu_seconds: float
    list_seconds: float
    create_seconds: float
    creates: int


def cold(remote: Raw, local: Raw, namespace: str, page_size: int, concurrency: int) -> Cold:
    """Lists, then every mirror created into namespace (empty), as ksm-sync's cold pass."""
    started, cpu = time.monotonic(), time.process_time()
    seen = lists(remote, local, namespace, page_size)
    by_ref = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in seen.remote_endpoints}
    groups = [
        mirror_bodies(s, by_ref.get((s["metadata"]["namespace"], s["metadata"]["name"])), namespace)
        for s in seen.remote_services
    ]
    creating = time.monotonic()

    def one(bodies: list[Json]) -> int:
        for body in bodies:
            collection = "services" if body["kind"] == "Service" else "endpoints"
            local.request("POST", f"/api/v1/namespaces/{namespace}/{collection}", body)
        return len(bodies)

    creates = sum(run_all(one, groups, concurrency))  # type: ignore[arg-type]
    done = time.monotonic()
    return Cold(done - started, time.process_time() - cpu, seen.seconds, done - creating, creates)
