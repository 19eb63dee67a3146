"""The cluster set's floor: the requests of one member's ksm-sync pass, sent by the minimal client.

The lists, one after the other in ksm-sync's order: for the remote member, then the local one,
the API group's discovery, every ServiceExport, every Service and the slices of Services (their
own controllers'); then, locally, the namespaces and what was written for the set
(ServiceImports, derived Services, MCS slices). A cold pass then writes, on as many threads as
ksm-sync's --concurrency, per import: its derived Service, its ServiceImport with the derived
Service's IPs, the import's status, its slices; and the status of each local export.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bench import setworld, world
from bench.floor import Cold
from bench.raw import Json, Raw, run_all
from bench.setworld import OWN_SERVICES, OWN_SLICES, collection, ours


@dataclass(frozen=True)
class Member:
    """What the floor read of one member."""

    exports: list[Json]
    services: list[Json]
    slices: list[Json]


@dataclass(frozen=True)
class Lists:
    seconds: float
    cpu_seconds: float  # this process's, which does nothing else meanwhile
    version: str  # the local member's
    members: dict[str, Member]  # by cluster id


def version_of(member: Raw) -> str:
    served = {v["version"] for v in member.request("GET", setworld.DISCOVERY)["versions"]}
    return next(v for v in setworld.VERSIONS if v in served)


def read_member(member: Raw, page_size: int) -> tuple[str, Member]:
    version = version_of(member)
    return version, Member(
        member.list_all(collection(version, "serviceexports"), "", page_size),
        member.list_all("/api/v1/services", OWN_SERVICES, page_size),
        member.list_all(f"{world.SLICES}/endpointslices", OWN_SLICES, page_size),
    )


def lists(remote: Raw, local: Raw, ids: tuple[str, str], page_size: int) -> Lists:
    """A pass's lists: ids are the local member's cluster id, then the remote's."""
    started, cpu = time.monotonic(), time.process_time()
    local_id, remote_id = ids
    _, remote_member = read_member(remote, page_size)
    version, local_member = read_member(local, page_size)
    local.list_all("/api/v1/namespaces", "", page_size)
    local.list_all(collection(version, "serviceimports"), ours(local_id), page_size)
    local.list_all("/api/v1/services", ours(local_id), page_size)
    local.list_all(f"{world.SLICES}/endpointslices", ours(local_id, True), page_size)
    members = {local_id: local_member, remote_id: remote_member}
    return Lists(time.monotonic() - started, time.process_time() - cpu, version, members)


def _ref(obj: Json) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def cold(remote: Raw, local: Raw, ids: tuple[str, str], page_size: int, concurrency: int) -> Cold:
    """Lists, then every import written into local (which has none), and its exports' status."""
    started, cpu = time.monotonic(), time.process_time()
    seen = lists(remote, local, ids, page_size)
    local_id, version = ids[0], seen.version
    jobs: list[tuple[tuple[str, str], int, Json, list[Json], str]] = []
    for cluster, member in seen.members.items():
        services = {_ref(s): s for s in member.services}
        slices: dict[tuple[str, str], list[Json]] = {}
        for s in member.slices:
            service = s["metadata"]["labels"][setworld.SERVICE_NAME_LABEL]
            slices.setdefault((s["metadata"]["namespace"], service), []).append(s)
        for export in member.exports:
            ref = _ref(export)
            jobs.append((ref, 0, services[ref], slices.get(ref, []), cluster))
            if cluster == local_id:
                jobs.append((ref, 1, export, [], cluster))
    jobs.sort(key=lambda job: job[:2])  # ksm-sync's order: by Service, its import first
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    creating = time.monotonic()

    def one(job: tuple[tuple[str, str], int, Json, list[Json], str]) -> int:
        (namespace, name), status_only, obj, sources, cluster = job
        if status_only:
            path = collection(version, "serviceexports", namespace)
            local.request("PATCH", f"{path}/{name}/status", setworld.export_status(obj, stamp),
                          content_type=setworld.MERGE_PATCH)  # fmt: skip
            return 0
        derived = local.request("POST", f"/api/v1/namespaces/{namespace}/services",
                                setworld.derived_body(obj, local_id))  # fmt: skip
        imports = collection(version, "serviceimports", namespace)
        created = local.request("POST", imports,
                                setworld.import_body(obj, local_id, version, derived))  # fmt: skip
        local.request("PATCH", f"{imports}/{name}/status",
                      setworld.import_status(created, cluster),
                      content_type=setworld.MERGE_PATCH)  # fmt: skip
        for source in sources:
            local.request("POST", f"{world.SLICES}/namespaces/{namespace}/endpointslices",
                          setworld.slice_body(source, name, cluster, local_id))  # fmt: skip
        return 2 + len(sources)

    creates = sum(run_all(one, jobs, concurrency))  # type: ignore[arg-type]
    done = time.monotonic()
    return Cold(done - started, time.process_time() - cpu, seen.seconds, done - creating, creates)
