"""Observe: complete lists of each remote's selected Services with their endpoints, and of
the local mirrors of every prefix this run owns; with a cluster set, each member's exports
and what ksm-sync wrote locally for them.

A list is complete or it is an ApiError: a pass never acts on part of the world. The local
namespace is listed once per pass, whatever the number of remotes; every cluster-wide list is
one list per kind (label-selected where a label says what is wanted), never one per namespace.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ksm_sync import ownership
from ksm_sync.errors import UsageError
from ksm_sync.kube import ApiError, Kube
from ksm_sync.model import (
    MCS_GROUP,
    Endpoints,
    EndpointSlice,
    Json,
    Kind,
    Ref,
    Service,
    ServiceExport,
    ServiceImport,
    collection_path,
    endpoints_from_api,
    export_from_api,
    import_from_api,
    service_from_api,
    slice_from_api,
)
from ksm_sync.settings import EndpointsApi

PAGE_SIZE = 500


@dataclass(frozen=True)
class Objects:
    """Services with their Endpoints and EndpointSlices: a remote's selected ones (with
    whichever endpoints are mirrored), or the local mirrors (with both kinds, since either
    replaces the other when --endpoints-api changes)."""

    services: tuple[Service, ...] = ()
    endpoints: tuple[Endpoints, ...] = ()
    slices: tuple[EndpointSlice, ...] = ()

    def counts(self, side: str) -> dict[str, int]:
        """How many objects each list held: the metrics' and the summary's view of the world."""
        return {
            f"{side}_services": len(self.services),
            f"{side}_endpoints": len(self.endpoints),
            f"{side}_endpointslices": len(self.slices),
        }

    def of_prefix(self, *prefixes: str) -> Objects:
        """The mirrors these prefixes own."""

        def mine(objects: Iterable, kind: Kind) -> tuple:
            return tuple(
                o for o in objects if any(ownership.owned(o.meta, p, kind) for p in prefixes)
            )

        return Objects(
            mine(self.services, "Service"),
            mine(self.endpoints, "Endpoints"),
            mine(self.slices, "EndpointSlice"),
        )


def observe_remote(
    kube: Kube, label_selector: str, endpoints_api: EndpointsApi, page_size: int = PAGE_SIZE
) -> Objects:
    """A remote's Services matching label_selector, in all namespaces, with their endpoints."""
    query = {"labelSelector": label_selector}
    services = _list(kube, collection_path("Service"), query, service_from_api, page_size)
    if endpoints_api == "endpoints":
        endpoints = _list(kube, collection_path("Endpoints"), query, endpoints_from_api, page_size)
        return Objects(services, endpoints=endpoints)
    slices = _list(kube, collection_path("EndpointSlice"), query, slice_from_api, page_size)
    return Objects(services, slices=slices)


def observe_local(
    kube: Kube, namespace: str, prefixes: Iterable[str], page_size: int = PAGE_SIZE
) -> Objects:
    """The mirrors of these prefixes (none: of every prefix) in the mirror namespace, each
    kind in one list."""

    def mirrors(kind: Kind, convert: Callable) -> tuple:
        query = {"labelSelector": ownership.selector(*prefixes, kind=kind)}
        return _list(kube, collection_path(kind, namespace), query, convert, page_size)

    return Objects(
        mirrors("Service", service_from_api),
        mirrors("Endpoints", endpoints_from_api),
        mirrors("EndpointSlice", slice_from_api),
    )


MCS_VERSIONS = ("v1beta1", "v1alpha1")  # the first one a cluster serves is read and written
# A member's own slices of its Services: the slice controllers' (or a third party's), never the
# cluster set's copies, whoever wrote them, nor ksm-sync's mirrors.
OWN_SLICES = (
    f"{ownership.SERVICE_NAME_LABEL},!{ownership.MCS_SERVICE_LABEL},"
    f"{ownership.MANAGED_BY_LABEL}!={ownership.MANAGED_BY}"
)
# A member's Services that could be exported: not the derived ones a ksm-sync made there.
OWN_SERVICES = f"!{ownership.CLUSTER_SET_LABEL}"


@dataclass(frozen=True)
class Exported:
    """One member of the cluster set: its ServiceExports, the Services they export, and those
    Services' own slices."""

    exports: tuple[ServiceExport, ...]
    services: tuple[Service, ...]
    slices: tuple[EndpointSlice, ...]
    version: str  # the Multi-Cluster Services API version it serves


@dataclass(frozen=True)
class Imported:
    """What this cluster's ksm-sync wrote for the cluster set, and the local namespaces."""

    imports: tuple[ServiceImport, ...] = ()
    derived: tuple[Service, ...] = ()
    slices: tuple[EndpointSlice, ...] = ()
    namespaces: frozenset[str] = frozenset()  # that exist and are not being deleted


def mcs_version(kube: Kube) -> str:
    """The Multi-Cluster Services API version the cluster serves: v1beta1, else v1alpha1."""
    try:
        group = kube.request("GET", f"/apis/{MCS_GROUP}")
    except ApiError as error:
        if error.status != 404:
            raise
        group = {}
    served = {v.get("version") for v in group.get("versions") or ()}
    for version in MCS_VERSIONS:
        if version in served:
            return version
    raise UsageError(
        f"the {kube.side} cluster does not serve the Multi-Cluster Services API "
        f"({MCS_GROUP}): install the ServiceExport and ServiceImport CRDs of mcs-api v0.5"
    )


def observe_exports(kube: Kube, page_size: int = PAGE_SIZE) -> Exported:
    """A member's exports, in all namespaces, with their Services and those Services' slices."""
    version = mcs_version(kube)
    exports = _list(kube, collection_path("ServiceExport", mcs_version=version), {},
                    export_from_api, page_size)  # fmt: skip
    wanted = {e.meta.ref for e in exports}

    # No label says which Services (and slices) are exported: every one is listed, and those
    # of other Services are dropped as their page comes, never converted.
    def service(raw: Json) -> Service | None:
        meta = raw["metadata"]
        return service_from_api(raw) if Ref(meta["namespace"], meta["name"]) in wanted else None

    def slice_of(raw: Json) -> EndpointSlice | None:
        meta = raw["metadata"]
        name = (meta.get("labels") or {}).get(ownership.SERVICE_NAME_LABEL, "")
        return slice_from_api(raw) if Ref(meta["namespace"], name) in wanted else None

    services = _list(kube, collection_path("Service"), {"labelSelector": OWN_SERVICES}, service,
                     page_size)  # fmt: skip
    slices = _list(kube, collection_path("EndpointSlice"), {"labelSelector": OWN_SLICES},
                   slice_of, page_size)  # fmt: skip
    return Exported(
        exports=exports,
        services=tuple(s for s in services if s is not None),
        slices=tuple(s for s in slices if s is not None),
        version=version,
    )


def observe_imports(
    kube: Kube, cluster_id: str, version: str, page_size: int = PAGE_SIZE
) -> Imported:
    """The cluster set's objects this cluster's ksm-sync wrote, and the namespaces there are."""

    def ours(kind: Kind, convert: Callable) -> tuple:
        query = {"labelSelector": ownership.clusterset_selector(cluster_id, kind)}
        path = collection_path(kind, mcs_version=version)
        return _list(kube, path, query, convert, page_size)

    def usable(namespace: Json) -> str | None:
        """Its name, unless it is being deleted (nothing can be created in it)."""
        terminating = (namespace.get("status") or {}).get("phase") == "Terminating"
        return None if terminating else namespace["metadata"]["name"]

    namespaces = _list(kube, "/api/v1/namespaces", {}, usable, page_size)
    return Imported(
        imports=ours("ServiceImport", import_from_api),
        derived=ours("Service", service_from_api),
        slices=ours("EndpointSlice", slice_from_api),
        namespaces=frozenset(n for n in namespaces if n is not None),
    )


def _list(kube: Kube, path: str, query: dict[str, str], convert: Callable, page_size: int) -> tuple:
    return tuple(kube.list_all(path, query, page_size=page_size, convert=convert))


@contextmanager
def collector_paused() -> Iterator[None]:
    """Keeps Python's cyclic garbage collector off while lists become models.

    Parsing and converting 10,000 Services and Endpoints allocates millions of
    containers, none of them in a reference cycle, and each allocation brings the next
    collection nearer; those collections walked the growing heap again and again and
    cost 2-3x the parsing itself (issue 7). Memory is still freed by reference counting.

    At the end the models are frozen (kept out of later collections, still freed by
    reference counting): otherwise the first full collection after the pause walks them
    all, a quarter of an unchanged pass at 10,000 Services. The last pass's frozen
    objects are thawed and collected first, so a cycle that was caught in them is not
    kept for ever by `loop`.
    """
    if gc.get_freeze_count():  # a pass of `loop` after the first: thaw the last one's
        gc.unfreeze()
        gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
