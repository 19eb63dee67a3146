"""The cluster set's world: two members, each exporting its own N/2 Services (two ports, one
EndpointSlice of three ready addresses, a ServiceExport) over the same 10 namespaces, so that
every member has the namespace of every export.

Also the floor's view of what ksm-sync writes for this world: the derived Service, the
ServiceImport (then its status), the MCS slices and the local exports' conditions, each body as
ksm-sync writes it, its names and labels restated here (the floor owes ksm-sync nothing).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Any

from bench import world
from bench.raw import Json, Raw, run_all

GROUP = "multicluster.x-k8s.io"
DISCOVERY = f"/apis/{GROUP}"
VERSIONS = ("v1beta1", "v1alpha1")  # the first one served is read and written, as ksm-sync does
# ksm-sync's labels and annotation, restated.
CLUSTER_SET_LABEL = "ksm-sync/cluster-set"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MCS_SERVICE_LABEL = "multicluster.kubernetes.io/service-name"
MCS_SOURCE_LABEL = "multicluster.kubernetes.io/source-cluster"
DERIVED_ANNOTATION = "multicluster.kubernetes.io/derived-service"
# A member's own slices, the cluster set's lists: ksm-sync's selectors, restated.
OWN_SLICES = f"{SERVICE_NAME_LABEL},!{MCS_SERVICE_LABEL},{MANAGED_BY_LABEL}!=ksm-sync"
OWN_SERVICES = f"!{CLUSTER_SET_LABEL}"
MERGE_PATCH = "application/merge-patch+json"


def ours(cluster_id: str, slices: bool = False) -> str:
    """The selector of what the local member's ksm-sync wrote for the set."""
    selector = f"{CLUSTER_SET_LABEL}={cluster_id}"
    return f"{selector},{MANAGED_BY_LABEL}=ksm-sync" if slices else selector


def collection(version: str, plural: str, namespace: str = "") -> str:
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{DISCOVERY}/{version}{where}/{plural}"


def export_body(i: int) -> Json:
    namespace, name = world.where(i)
    return {
        "apiVersion": f"{GROUP}/{VERSIONS[0]}",
        "kind": "ServiceExport",
        "metadata": {"name": name, "namespace": namespace},
    }


def seed_member(member: Raw, indexes: range, concurrency: int, *, export: bool = True) -> None:
    """The namespaces, then each index's Service and slice, and its export (unless not)."""
    for namespace in world.remote_namespaces():
        member.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    add(member, indexes, concurrency, export=export)


def add(member: Raw, indexes: Iterable[int], concurrency: int, *, export: bool = True) -> None:
    """Each index's Service and slice, and its export (unless not), concurrently."""

    def one(i: int) -> None:
        namespace, _ = world.where(i)
        member.request("POST", f"/api/v1/namespaces/{namespace}/services", world.remote_service(i))
        member.request(
            "POST", f"{world.SLICES}/namespaces/{namespace}/endpointslices", world.remote_slice(i)
        )
        if export:
            create_export(member, i)

    for _ in run_all(one, indexes, concurrency):
        pass


def create_export(member: Raw, i: int) -> None:
    namespace, _ = world.where(i)
    member.request("POST", collection(VERSIONS[0], "serviceexports", namespace), export_body(i))


def derived_name(namespace: str, name: str) -> str:
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return "derived-" + base64.b32hexencode(digest).decode().lower()[:10]


def mcs_slice_name(service: str, cluster: str, source: str) -> str:
    digest = hashlib.sha256(f"{cluster}/{service}/{source}".encode()).hexdigest()[:10]
    return f"{service}-{cluster}-{digest}"


def _port(p: Json) -> Json:
    return {"protocol": p.get("protocol") or "TCP", "port": p["port"], "name": p["name"]}


def _ports(service: Json) -> list[Json]:
    """The exported Service's ports as the import's, sorted by name (this world's have names)."""
    return sorted(map(_port, service["spec"]["ports"]), key=lambda p: p["name"])


def derived_body(service: Json, local_id: str) -> Json:
    """The derived Service of a ClusterSetIP import of service (its only exporter here)."""
    meta = service["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": derived_name(meta["namespace"], meta["name"]),
            "namespace": meta["namespace"],
            "labels": {CLUSTER_SET_LABEL: local_id, MCS_SERVICE_LABEL: meta["name"]},
            "annotations": {},
        },
        "spec": {
            "type": "ClusterIP",
            "ports": [{**p, "targetPort": p["port"]} for p in _ports(service)],
            "sessionAffinity": "None",
            "sessionAffinityConfig": None,
            "ipFamilyPolicy": "SingleStack",
            "ipFamilies": service["spec"]["ipFamilies"][:1],
        },
    }


def import_body(service: Json, local_id: str, version: str, derived: Json) -> Json:
    """The ServiceImport, with the cluster IPs the server gave its derived Service."""
    meta, spec = service["metadata"], service["spec"]
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": "ServiceImport",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {CLUSTER_SET_LABEL: local_id},
            "annotations": {DERIVED_ANNOTATION: derived["metadata"]["name"]},
        },
        "spec": {
            "type": "ClusterSetIP",
            "ports": _ports(service),
            "ips": derived["spec"]["clusterIPs"],
            "ipFamilies": derived["spec"]["ipFamilies"],
            "internalTrafficPolicy": spec["internalTrafficPolicy"],
            "sessionAffinity": "None",
        },
    }


def import_status(created: Json, cluster: str) -> Json:
    return {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "status": {"clusters": [{"cluster": cluster}]},
    }


def slice_body(source: Json, service: str, cluster: str, local_id: str) -> Json:
    """A member's slice of service, as the cluster set's slice of its derived Service."""
    namespace = source["metadata"]["namespace"]
    labels = {
        CLUSTER_SET_LABEL: local_id,
        MCS_SERVICE_LABEL: service,
        MCS_SOURCE_LABEL: cluster,
        MANAGED_BY_LABEL: "ksm-sync",
        SERVICE_NAME_LABEL: derived_name(namespace, service),
    }
    endpoints = [
        {"addresses": e["addresses"],
         "conditions": {k: v for k, v in (e.get("conditions") or {}).items() if v is not None}}
        for e in source.get("endpoints") or ()
    ]  # fmt: skip
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": mcs_slice_name(service, cluster, source["metadata"]["name"]),
            "namespace": namespace,
            "labels": labels,
            "annotations": {},
        },
        "addressType": source["addressType"],
        "ports": [_port(p) for p in source.get("ports") or ()],
        "endpoints": endpoints,
    }


def export_status(export: Json, stamp: str) -> Json:
    """A valid export's conditions where no member disagrees: Valid, Ready, no Conflict."""
    meta = export["metadata"]
    conditions: list[dict[str, Any]] = [
        {"type": kind, "status": status, "reason": reason, "message": message,
         "observedGeneration": meta.get("generation", 0), "lastTransitionTime": stamp}
        for kind, status, reason, message in (
            ("Valid", "True", "Valid", "the Service is valid for export"),
            ("Ready", "True", "Exported", "the Service is exported to the cluster set"),
            ("Conflict", "False", "NoConflicts", "the exported Services agree"),
        )
    ]  # fmt: skip
    return {"metadata": {"resourceVersion": meta["resourceVersion"]},
            "status": {"conditions": conditions}}  # fmt: skip
