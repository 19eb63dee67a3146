"""Observe: complete lists of each remote's selected Services with their endpoints, and of
the local mirrors of every prefix this run owns.

A list is complete or it is an ApiError: a pass never acts on part of the world. The local
namespace is listed once per pass, whatever the number of remotes.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ksm_sync import ownership
from ksm_sync.kube import Kube
from ksm_sync.model import (
    Endpoints,
    EndpointSlice,
    Kind,
    Service,
    collection_path,
    endpoints_from_api,
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
