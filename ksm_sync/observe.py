"""Observe: complete lists of remote Services/Endpoints and of this prefix's local mirrors."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ksm_sync import ownership
from ksm_sync.kube import Kube
from ksm_sync.model import (
    Endpoints,
    EndpointSlice,
    Service,
    endpoints_from_api,
    service_from_api,
    slice_from_api,
)
from ksm_sync.settings import Target

PAGE_SIZE = 500
SLICES_API = "/apis/discovery.k8s.io/v1"


@dataclass(frozen=True)
class Observed:
    """The remote's Services with their Endpoints or slices (whichever the target mirrors),
    and the local mirrors with both their Endpoints and slices: the other kind is what a
    change of --endpoints-api replaces."""

    remote_services: tuple[Service, ...]
    remote_endpoints: tuple[Endpoints, ...]
    remote_slices: tuple[EndpointSlice, ...]
    local_services: tuple[Service, ...]
    local_endpoints: tuple[Endpoints, ...]
    local_slices: tuple[EndpointSlice, ...]

    def counts(self) -> dict[str, int]:
        """How many objects each list held: the metrics' and the summary's view of the world."""
        return {
            "remote_services": len(self.remote_services),
            "remote_endpoints": len(self.remote_endpoints),
            "remote_endpointslices": len(self.remote_slices),
            "local_services": len(self.local_services),
            "local_endpoints": len(self.local_endpoints),
            "local_endpointslices": len(self.local_slices),
        }


def observe(
    remote: Kube,
    local: Kube,
    *,
    label_selector: str,
    target: Target,
    page_size: int = PAGE_SIZE,
) -> Observed:
    """All four lists, complete, or ApiError: a pass never acts on part of the world."""
    remote_query = {"labelSelector": label_selector}
    local_query = {"labelSelector": ownership.selector(target.prefix)}
    with _collector_paused():
        return _observe(remote, local, remote_query, local_query, target, page_size)


@contextmanager
def _collector_paused() -> Iterator[None]:
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


def _observe(
    remote: Kube,
    local: Kube,
    remote_query: dict[str, str],
    local_query: dict[str, str],
    target: Target,
    page_size: int,
) -> Observed:
    def listed(kube: Kube, path: str, query: dict[str, str], convert: Callable) -> tuple:
        return tuple(kube.list_all(path, query, page_size=page_size, convert=convert))

    core = f"/api/v1/namespaces/{target.namespace}"
    discovery = f"{SLICES_API}/namespaces/{target.namespace}"
    slices_mode = target.endpoints_api == "endpointslices"
    return Observed(
        remote_services=listed(remote, "/api/v1/services", remote_query, service_from_api),
        remote_endpoints=()
        if slices_mode
        else listed(remote, "/api/v1/endpoints", remote_query, endpoints_from_api),
        remote_slices=listed(remote, f"{SLICES_API}/endpointslices", remote_query, slice_from_api)
        if slices_mode
        else (),
        local_services=listed(local, f"{core}/services", local_query, service_from_api),
        local_endpoints=listed(local, f"{core}/endpoints", local_query, endpoints_from_api),
        local_slices=listed(local, f"{discovery}/endpointslices", local_query, slice_from_api),
    )
