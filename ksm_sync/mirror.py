"""What should exist locally: one mirror Service per remote Service, with its endpoints.

The endpoints are an Endpoints object copied from the remote's, or (the default) one
EndpointSlice per remote slice, whichever API the target mirrors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ksm_sync import ownership
from ksm_sync.model import Endpoints, EndpointSlice, Meta, Ref, Service
from ksm_sync.naming import mirror_name, mirror_problem, slice_name
from ksm_sync.settings import Target


@dataclass(frozen=True)
class Mirror:
    remote: Ref
    service: Service
    endpoints: Endpoints | None  # None: none mirrored (no remote Endpoints, or slices mirrored)
    slices: tuple[EndpointSlice, ...] = ()

    @property
    def name(self) -> str:
        return self.service.meta.ref.name

    @property
    def answers(self) -> bool:
        """Whether the mirror has endpoint objects at all (a Service alone answers nothing)."""
        return self.endpoints is not None or bool(self.slices)


@dataclass(frozen=True)
class Skip:
    """A remote Service that cannot be mirrored, and why; reported, never written."""

    remote: Ref
    mirror_name: str
    reason: str


def mirror_service(remote: Service, meta: Meta) -> Service:
    """ClusterIP (or headless) without selector or nodePort; ExternalName stays ExternalName.

    A ClusterIP mirror keeps how traffic reaches the remote pods: ClientIP stickiness, and
    an IP family they have. A single-stack remote's family is kept exactly; a dual-stack
    one's policy alone, so the local cluster orders the families as it is configured.
    """
    if remote.type == "ExternalName":
        return Service(meta, "ExternalName", False, remote.ports, remote.external_name)
    if remote.headless:
        return Service(meta, "ClusterIP", True, remote.ports)
    policy = remote.ip_family_policy or "SingleStack"
    return Service(
        meta=meta,
        type="ClusterIP",
        headless=False,
        ports=remote.ports,
        affinity_timeout=remote.affinity_timeout,
        ip_family_policy=policy,
        ip_families=remote.ip_families[:1] if policy == "SingleStack" else (),
    )


def mirror_slice(
    remote: EndpointSlice, mirror: str, target: Target, ref: Ref, *, source: str | None = None
) -> EndpointSlice:
    """A remote slice, as the mirror's: its address type, ports and endpoints.

    nodeName, zone and hints are dropped: they name the remote's nodes and zones, and a
    local zone of the same name would steer topology-aware routing to remote pods. The
    name comes from source (default: the remote slice's name), the same every pass.
    """
    name = slice_name(mirror, source or remote.meta.ref.name)
    meta = ownership.slice_meta(name, target.namespace, target.prefix, ref, mirror)
    return EndpointSlice(meta, mirror, remote.address_type, remote.ports, remote.endpoints)


def slices_by_service(slices: Iterable[EndpointSlice]) -> dict[Ref, list[EndpointSlice]]:
    """Slices grouped by the Service they belong to (their kubernetes.io/service-name)."""
    grouped: dict[Ref, list[EndpointSlice]] = {}
    for each in slices:
        grouped.setdefault(Ref(each.meta.ref.namespace, each.service), []).append(each)
    return grouped


def shared_names(refs: Iterable[Ref], prefix: str) -> dict[Ref, str]:
    """Remotes whose mirror name is another remote's too, and why neither is mirrored:
    mirroring either would silently stand the other's name for it."""
    claims: dict[str, list[Ref]] = {}
    for ref in refs:
        claims.setdefault(mirror_name(prefix, ref.namespace, ref.name), []).append(ref)
    return {
        ref: f"conflict: mirror name {name!r} is also the mirror name of "
        f"{', '.join(str(other) for other in claimants if other != ref)}; neither is mirrored"
        for name, claimants in claims.items()
        if len(claimants) > 1
        for ref in claimants
    }


def desired_mirrors(
    services: Iterable[Service],
    endpoints: Iterable[Endpoints],
    target: Target,
    slices: Iterable[EndpointSlice] = (),
) -> tuple[dict[str, Mirror], list[Skip]]:
    """Mirrors by local name, and the remote Services that cannot be mirrored.

    Endpoints are mirrored only with their Service: an Endpoints mirror without a
    Service would be an orphan nothing reads.
    """
    by_ref = {e.meta.ref: e for e in endpoints}
    slices_by_ref = slices_by_service(slices)
    services = list(services)
    shared = shared_names((s.meta.ref for s in services), target.prefix)
    mirrors: dict[str, Mirror] = {}
    skips: list[Skip] = []
    for remote in services:
        ref = remote.meta.ref
        name = mirror_name(target.prefix, ref.namespace, ref.name)
        if ref in shared:
            skips.append(Skip(ref, name, shared[ref]))
            continue
        if problem := mirror_problem(target.prefix, ref.namespace, ref.name):
            skips.append(Skip(ref, name, problem))
            continue
        if remote.type == "ExternalName" and not remote.external_name:
            skips.append(Skip(ref, name, "ExternalName Service without spec.externalName"))
            continue
        meta = ownership.mirror_meta(name, target.namespace, target.prefix, ref)
        remote_endpoints = by_ref.get(ref)
        mirror_endpoints = None
        mirror_slices: tuple[EndpointSlice, ...] = ()
        if remote.type != "ExternalName":
            if remote_endpoints is not None:
                mirror_endpoints = Endpoints(meta=meta, subsets=remote_endpoints.subsets)
            mirror_slices = tuple(
                mirror_slice(r, name, target, ref) for r in slices_by_ref.get(ref, ())
            )
        mirrors[name] = Mirror(ref, mirror_service(remote, meta), mirror_endpoints, mirror_slices)
    return mirrors, skips
