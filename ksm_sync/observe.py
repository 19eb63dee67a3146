"""Observe: complete lists of remote Services/Endpoints and of this prefix's local mirrors."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ksm_sync import ownership
from ksm_sync.kube import Kube
from ksm_sync.model import Endpoints, Service, endpoints_from_api, service_from_api
from ksm_sync.settings import Target

PAGE_SIZE = 500


@dataclass(frozen=True)
class Observed:
    remote_services: tuple[Service, ...]
    remote_endpoints: tuple[Endpoints, ...]
    local_services: tuple[Service, ...]
    local_endpoints: tuple[Endpoints, ...]

    def counts(self) -> dict[str, int]:
        """How many objects each list held: the metrics' and the summary's view of the world."""
        return {
            "remote_services": len(self.remote_services),
            "remote_endpoints": len(self.remote_endpoints),
            "local_services": len(self.local_services),
            "local_endpoints": len(self.local_endpoints),
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
        return _observe(remote, local, remote_query, local_query, target.namespace, page_size)


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
    namespace: str,
    page_size: int,
) -> Observed:
    def services(kube: Kube, path: str, query: dict[str, str]) -> tuple[Service, ...]:
        return tuple(kube.list_all(path, query, page_size=page_size, convert=service_from_api))

    def endpoints(kube: Kube, path: str, query: dict[str, str]) -> tuple[Endpoints, ...]:
        return tuple(kube.list_all(path, query, page_size=page_size, convert=endpoints_from_api))

    mirrors = f"/api/v1/namespaces/{namespace}"
    return Observed(
        remote_services=services(remote, "/api/v1/services", remote_query),
        remote_endpoints=endpoints(remote, "/api/v1/endpoints", remote_query),
        local_services=services(local, f"{mirrors}/services", local_query),
        local_endpoints=endpoints(local, f"{mirrors}/endpoints", local_query),
    )
