"""Global services: one local mirror for a Service that several clusters have.

A remote Service carrying the global label is merged, by namespace and name, with the
Services of that name in the other remotes (and, if asked, the local cluster's own) behind
one mirror of the global prefix. Each cluster contributes its own EndpointSlices, labelled
with its name, so that a cluster takes only its own slices with it when its Service goes.

Rules:
- The Service (ports, type, headless) is the first cluster's that has it, in the order of
  the configuration. A cluster whose Service differs is reported; its slices are still
  mirrored (kube-proxy routes a Service port to the endpoint port of the same name, so its
  endpoints serve the ports both have).
- A cluster that could not be read this pass keeps its slices as they are, for
  `unreachable_after`; then they go. For as long, it keeps its say in the shape: while a
  cluster ahead of the first readable one is away, the Service stays as it is (a type or
  headless flip would recreate it, with a new cluster IP, and again when it is back).
  When it was first seen unreachable is recorded on the mirror Service (an annotation),
  so that `once`, which remembers nothing, keeps the same time as `loop`; the record is
  written when it changes, not every pass.
- A mirror that no cluster contributes to any more is stale, and goes as any other.
- Two Services whose mirror names are the same (a name or namespace holding the
  separator) are a conflict: neither is mirrored.

Pure: the pass gives it what it observed and the time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ksm_sync import ownership
from ksm_sync.mirror import (
    Mirror,
    Skip,
    mirror_service,
    mirror_slice,
    shared_names,
    slices_by_service,
)
from ksm_sync.model import EndpointSlice, Meta, Ref, Service
from ksm_sync.naming import mirror_name, mirror_problem
from ksm_sync.observe import Objects
from ksm_sync.settings import Target

LOCAL_CLUSTER = "local"  # the source name of the local cluster's own endpoints


@dataclass(frozen=True)
class Source:
    """One cluster's globally labelled Services and slices; None: it could not be read."""

    cluster: str
    objects: Objects | None


@dataclass(frozen=True)
class _Offer:
    cluster: str
    service: Service
    slices: tuple[EndpointSlice, ...]


def desired_global(
    sources: Sequence[Source],
    current: Objects,
    target: Target,
    *,
    now: float,
    unreachable_after: float,
) -> tuple[dict[str, Mirror], list[Skip], list[str]]:
    """Global mirrors by name, the remotes that cannot be mirrored, and what to warn about."""
    offers = _offers(sources)
    order = [s.cluster for s in sources]
    unreachable = [s.cluster for s in sources if s.objects is None]
    current_services = {s.meta.ref.name: s for s in current.services}
    kept: dict[str, dict[str, list[EndpointSlice]]] = {}  # mirror -> cluster -> its slices
    for have in current.slices:
        cluster = have.meta.label(ownership.SOURCE_LABEL) or ""
        kept.setdefault(have.service, {}).setdefault(cluster, []).append(have)

    mirrors: dict[str, Mirror] = {}
    skips: list[Skip] = []
    warnings: list[str] = []
    refs = set(offers) | {
        r for s in current_services.values() if (r := ownership.remote_of(s.meta))
    }
    shared = shared_names(refs, target.prefix)
    for ref in sorted(refs, key=lambda r: (r.namespace, r.name)):
        name = mirror_name(target.prefix, ref.namespace, ref.name)
        if problem := shared.get(ref) or mirror_problem(target.prefix, ref.namespace, ref.name):
            skips.append(Skip(ref, name, f"global service: {problem}"))
            continue
        current_service = current_services.get(name)
        recorded = read_record(current_service.meta if current_service else None)
        since = {cluster: recorded.get(cluster, now) for cluster in unreachable}
        # Unreachable clusters still within their time: what they had stays, even a
        # Service they alone had (with no endpoints to show it).
        waiting = {c for c, t in since.items() if now - t <= unreachable_after}
        ref_offers = offers.get(ref, [])
        if not ref_offers and not waiting:
            continue  # nobody has it any more: stale
        meta = ownership.mirror_meta(name, target.namespace, target.prefix, ref)
        # Every unreachable cluster stays recorded, past its time too, until it is back.
        meta = replace(meta, annotations=tuple(sorted((*meta.annotations, record(since)))))
        first = ref_offers[0] if ref_offers else None
        if first is not None:
            warnings += _disagreements(ref, first, ref_offers[1:])
        # The shape is the first cluster's (in the configuration's order) that has it. One
        # ahead of the first that answered, unreachable but within its time, may be that
        # one: while it is away, the shape stays as it is rather than flip to the next.
        ahead = order[: order.index(first.cluster)] if first is not None else order
        if name in current_services and any(c in waiting for c in ahead):
            service = replace(current_services[name], meta=meta)
        elif first is not None:
            service = mirror_service(first.service, meta)
        else:
            continue  # only clusters that cannot be read have it, and nothing was mirrored
        slices = [
            _sourced(mirror_slice(s, name, target, ref, source=f"{o.cluster}/{s.meta.ref.name}"),
                     o.cluster)
            for o in ref_offers
            for s in o.slices
        ]  # fmt: skip
        slices += [s for cluster in waiting for s in kept.get(name, {}).get(cluster, ())]
        mirrors[name] = Mirror(ref, service, None, tuple(slices))
    return mirrors, skips, warnings


def _offers(sources: Sequence[Source]) -> dict[Ref, list[_Offer]]:
    """What each readable cluster has of each global Service, in the order of the sources."""
    offers: dict[Ref, list[_Offer]] = {}
    for source in sources:
        if source.objects is None:
            continue
        slices = slices_by_service(source.objects.slices)
        for service in source.objects.services:
            ref = service.meta.ref
            own = () if service.type == "ExternalName" else tuple(slices.get(ref, ()))
            offers.setdefault(ref, []).append(_Offer(source.cluster, service, own))
    return offers


def _sourced(endpoint_slice: EndpointSlice, cluster: str) -> EndpointSlice:
    labels = (*endpoint_slice.meta.labels, (ownership.SOURCE_LABEL, cluster))
    return replace(endpoint_slice, meta=replace(endpoint_slice.meta, labels=tuple(sorted(labels))))


def _disagreements(ref: Ref, first: _Offer, others: Sequence[_Offer]) -> list[str]:
    out = []
    for other in others:
        a, b = first.service, other.service
        if set(a.ports) != set(b.ports) or (a.type, a.headless) != (b.type, b.headless):
            out.append(
                f"global service {ref}: the Service in {other.cluster} differs from the one in "
                f"{first.cluster} (ports, type or headless); {first.cluster}'s is mirrored, the "
                f"first in the configuration that has it, and {other.cluster}'s endpoints serve "
                "the ports both have"
            )
    return out


def read_record(meta: Meta | None) -> dict[str, float]:
    """When each cluster was first seen unreachable, as recorded on a mirror Service (or a
    cluster set's ServiceImport)."""
    raw = meta.annotation(ownership.UNREACHABLE_ANNOTATION) if meta else None
    try:
        record = json.loads(raw or "{}")
        return {c: datetime.fromisoformat(t).timestamp() for c, t in record.items()}
    except (ValueError, TypeError, AttributeError):
        return {}  # unreadable: counted from now, which only ever keeps slices longer


def record(since: dict[str, float]) -> tuple[str, str]:
    record = {
        cluster: datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
        for cluster, t in sorted(since.items())
    }
    return ownership.UNREACHABLE_ANNOTATION, json.dumps(record, separators=(",", ":"))
