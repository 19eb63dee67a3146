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
    """ClusterIP (or headless) without selector or nodePort; ExternalName stays ExternalName."""
    external = remote.type == "ExternalName"
    return Service(
        meta=meta,
        type="ExternalName" if external else "ClusterIP",
        headless=remote.headless and not external,
        ports=remote.ports,
        external_name=remote.external_name if external else None,
    )


def desired_mirrors(
    services: Iterable[Service],
    endpoints: Iterable[Endpoints],
    target: Target,
) -> tuple[dict[str, Mirror], list[Skip]]:
    """Mirrors by local name, and the remote Services that cannot be mirrored.

    Endpoints are mirrored only with their Service: an Endpoints mirror without a
    Service would be an orphan nothing reads.
    """
    by_ref = {e.meta.ref: e for e in endpoints}
    mirrors: dict[str, Mirror] = {}
    skips: list[Skip] = []
    for remote in services:
        ref = remote.meta.ref
        name = mirror_name(target.prefix, ref.namespace, ref.name)
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
