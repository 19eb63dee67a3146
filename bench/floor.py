"""The floor: ksm-sync's requests, sent by the minimal client with nothing on top.

Lists are read one after the other, as ksm-sync reads them (the remotes' at the same time
when there are several); creates run mirror by mirror (Service, then its Endpoints or
slices) on as many threads as ksm-sync's --concurrency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.raw import Json, Raw, run_all
from bench.world import SELECTOR, SLICES, mirror_bodies, prefix_of


@dataclass(frozen=True)
class Lists:
    seconds: float
    cpu_seconds: float  # this process's, which does nothing else meanwhile
    remotes: list[tuple[list[Json], list[Json], list[Json]]]  # services, endpoints, slices


def owned(remotes: int) -> str:
    prefixes = [prefix_of(i, remotes) for i in range(remotes)]
    if remotes == 1:
        return f"mirrored-svc=true,mirror-svc-prefix-sync={prefixes[0]}"
    return f"mirrored-svc=true,mirror-svc-prefix-sync in ({','.join(sorted(prefixes))})"


def lists(
    remotes: list[Raw], local: Raw, namespace: str, page_size: int, endpoints_api: str
) -> Lists:
    """The lists of a pass: each remote's Services and their Endpoints or slices; the local
    mirrors in namespace with both their Endpoints and slices, once."""
    started, cpu = time.monotonic(), time.process_time()
    selected = owned(len(remotes))
    local.list_all(f"/api/v1/namespaces/{namespace}/services", selected, page_size)
    local.list_all(f"/api/v1/namespaces/{namespace}/endpoints", selected, page_size)
    local.list_all(f"{SLICES}/namespaces/{namespace}/endpointslices", selected, page_size)

    def one(remote: Raw) -> tuple[list[Json], list[Json], list[Json]]:
        services = remote.list_all("/api/v1/services", SELECTOR, page_size)
        if endpoints_api == "endpoints":
            return services, remote.list_all("/api/v1/endpoints", SELECTOR, page_size), []
        return services, [], remote.list_all(f"{SLICES}/endpointslices", SELECTOR, page_size)

    seen = list(run_all(one, remotes, len(remotes)))
    elapsed = time.monotonic() - started
    return Lists(elapsed, time.process_time() - cpu, seen)


@dataclass(frozen=True)
class Cold:
    seconds: float
    cpu_seconds: float
    list_seconds: float
    create_seconds: float
    creates: int


def cold(
    remotes: list[Raw],
    local: Raw,
    namespace: str,
    page_size: int,
    concurrency: int,
    endpoints_api: str,
) -> Cold:
    """Lists, then every mirror created into namespace (empty), as ksm-sync's cold pass."""
    started, cpu = time.monotonic(), time.process_time()
    seen = lists(remotes, local, namespace, page_size, endpoints_api)

    def ref(obj: Json) -> tuple[str, str]:
        return obj["metadata"]["namespace"], obj["metadata"]["name"]

    groups = []
    for index, (services, remote_endpoints, remote_slices) in enumerate(seen.remotes):
        endpoints = {ref(e): e for e in remote_endpoints}
        slices: dict[tuple[str, str], list[Json]] = {}
        for s in remote_slices:
            service = s["metadata"]["labels"]["kubernetes.io/service-name"]
            slices.setdefault((s["metadata"]["namespace"], service), []).append(s)
        prefix = prefix_of(index, len(remotes))
        groups += [
            mirror_bodies(s, endpoints.get(ref(s)), slices.get(ref(s), []), namespace, prefix)
            for s in services
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
