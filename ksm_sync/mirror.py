"""What should exist locally: one mirror Service (and its Endpoints) per remote Service."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ksm_sync import ownership
from ksm_sync.model import Endpoints, Meta, Ref, Service
from ksm_sync.naming import mirror_name, name_problem
from ksm_sync.settings import Target


@dataclass(frozen=True)
class Mirror:
    remote: Ref
    service: Service
    endpoints: Endpoints | None  # None: the remote Service has no Endpoints object

    @property
    def name(self) -> str:
        return self.service.meta.ref.name


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


def desired_mirrors(
    services: Iterable[Service],
    endpoints: Iterable[Endpoints],
    target: Target,
) -> tuple[dict[str, Mirror], list[Skip]]:
    """Mirrors by local name, and the remote Services that cannot be mirrored.

    Endpoints are mirrored only with their Service: an Endpoints mirror without a
    Service would be an orphan nothing reads. Two remotes whose names map to one mirror
    name (a name or namespace holding the separator) are both skipped: mirroring either
    would silently stand the other's name for it.
    """
    by_ref = {e.meta.ref: e for e in endpoints}
    services = list(services)
    claims: dict[str, list[Ref]] = {}
    for remote in services:
        ref = remote.meta.ref
        claims.setdefault(mirror_name(target.prefix, ref.namespace, ref.name), []).append(ref)
    mirrors: dict[str, Mirror] = {}
    skips: list[Skip] = []
    for remote in services:
        ref = remote.meta.ref
        name = mirror_name(target.prefix, ref.namespace, ref.name)
        if len(claims[name]) > 1:
            others = ", ".join(str(other) for other in claims[name] if other != ref)
            reason = (
                f"mirror name {name!r} is also the mirror name of {others}; neither is mirrored"
            )
            skips.append(Skip(ref, name, reason))
            continue
        problem = name_problem(name)
        if problem is not None:
            skips.append(Skip(ref, name, f"mirror name {name!r} is {problem}"))
            continue
        if remote.type == "ExternalName" and not remote.external_name:
            skips.append(Skip(ref, name, "ExternalName Service without spec.externalName"))
            continue
        meta = ownership.mirror_meta(name, target.namespace, target.prefix, ref)
        remote_endpoints = by_ref.get(ref)
        mirror_endpoints = None
        if remote_endpoints is not None and remote.type != "ExternalName":
            mirror_endpoints = Endpoints(meta=meta, subsets=remote_endpoints.subsets)
        mirrors[name] = Mirror(ref, mirror_service(remote, meta), mirror_endpoints)
    return mirrors, skips
