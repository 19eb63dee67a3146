"""Values the planner compares, and their API (JSON) form.

Objects are normalised here, at the edge, so that everything after `observe` compares
plain frozen values and never sees server-side defaults (`protocol: TCP`, `targetPort`,
`clusterIPs`, `ipFamilies`, ...) or the order in which the server stores subsets.

What a mirror keeps of its remote (anything not listed is dropped):

| remote field                          | mirror              | why                               |
|---------------------------------------|---------------------|-----------------------------------|
| Service name and namespace            | in the mirror name  | the CoreDNS rewrite maps them     |
| Service labels, annotations           | dropped             | it carries ksm-sync's (ownership) |
| type ClusterIP/NodePort/LoadBalancer  | ClusterIP           | remote nodes are not local        |
| type ExternalName, externalName       | copied              | CoreDNS answers the same CNAME    |
| clusterIP                             | only None: headless | the local cluster allocates one   |
| ports: name, protocol, port,          | copied              | what clients connect to; named    |
|   targetPort, appProtocol             |                     |   Endpoints ports refer to them   |
| ports: nodePort                       | dropped             | a ClusterIP Service has none      |
| selector                              | dropped             | the endpoints come from remote    |
| sessionAffinity, its timeout          | copied (ClusterIP)  | ClientIP stickiness must hold     |
| ipFamilyPolicy; ipFamilies when       | copied (ClusterIP)  | the cluster IP's family must be   |
|   SingleStack                         |                     |   one the endpoints have          |
| external/internalTrafficPolicy,       | dropped             | about the remote's nodes          |
|   externalIPs, loadBalancer*          |                     |                                   |
| addresses, notReadyAddresses: ip      | copied, one per IP  | the remote pods, ready or not     |
| addresses: hostname                   | copied              | per-pod names of headless ones    |
| addresses: targetRef kind, name       | copied              | which pod, for people reading it  |
| addresses: targetRef uid, namespace,  | dropped             | they name remote objects          |
|   nodeName                            |                     |                                   |
| Endpoints ports: name, port,          | copied              | what kube-proxy and SRV serve     |
|   protocol, appProtocol               |                     |                                   |
| Endpoints annotations (over-capacity) | dropped             | about the remote object           |
| EndpointSlice: one per remote slice;  | copied              | what CoreDNS and kube-proxy read; |
|   addressType, ports, endpoints'      |                     |   unset conditions stay unset     |
|   addresses, conditions (ready,       |                     |                                   |
|   serving, terminating), hostname,    |                     |                                   |
|   targetRef kind and name             |                     |                                   |
| endpoints: nodeName, zone, hints,     | dropped             | remote nodes and zones: a local   |
|   targetRef uid, namespace            |                     |   zone of the same name would     |
|                                       |                     |   steer topology-aware routing    |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Json = dict[str, Any]
Kind = Literal["Service", "Endpoints", "EndpointSlice", "ServiceImport", "ServiceExport"]
MCS_GROUP = "multicluster.x-k8s.io"
_COLLECTIONS: dict[Kind, tuple[str, str]] = {
    "Service": ("/api/v1", "services"),
    "Endpoints": ("/api/v1", "endpoints"),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices"),
    "ServiceImport": (f"/apis/{MCS_GROUP}/{{version}}", "serviceimports"),
    "ServiceExport": (f"/apis/{MCS_GROUP}/{{version}}", "serviceexports"),
}
DEFAULT_AFFINITY_TIMEOUT = 10800  # the API server's default for ClientIP affinity


def collection_path(kind: Kind, namespace: str | None = None, *, mcs_version: str = "") -> str:
    """Where a kind's objects are listed and created: in one namespace, or in all of them.

    The Multi-Cluster Services kinds take the version the cluster serves (see `observe`).
    """
    api, plural = _COLLECTIONS[kind]
    api = api.format(version=mcs_version)
    return f"{api}/namespaces/{namespace}/{plural}" if namespace else f"{api}/{plural}"


@dataclass(frozen=True, slots=True)
class Ref:
    """namespace/name of a Kubernetes object."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Meta:
    """What the planner needs of metadata; uid and resource_version only for live objects."""

    ref: Ref
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    uid: str = field(default="", compare=False)
    resource_version: str = field(default="", compare=False)

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    protocol: str
    port: int
    target_port: int | str
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    meta: Meta
    type: str  # ClusterIP, NodePort, LoadBalancer or ExternalName
    headless: bool
    ports: tuple[ServicePort, ...]
    external_name: str | None = None
    affinity_timeout: int | None = None  # seconds of ClientIP session affinity; None: none
    ip_family_policy: str | None = None  # None: whatever the local cluster defaults to
    ip_families: tuple[str, ...] = ()
    # What a cluster set's ServiceImport takes from an exported Service; the cluster IPs the
    # server gave (those of a derived Service become its import's): read, never written.
    internal_traffic_policy: str | None = field(default=None, compare=False)
    traffic_distribution: str | None = field(default=None, compare=False)
    cluster_ips: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Address:
    ip: str
    hostname: str | None = None
    target_kind: str | None = None
    target_name: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int | None  # None only in an EndpointSlice: every port of the Service
    protocol: str
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Subset:
    ports: tuple[EndpointPort, ...]
    addresses: tuple[Address, ...]
    not_ready: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class Endpoints:
    meta: Meta
    subsets: tuple[Subset, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of an EndpointSlice; a condition left unset stays None, as the API has it."""

    addresses: tuple[str, ...]
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None
    hostname: str | None = None
    target_kind: str | None = None
    target_name: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    meta: Meta
    service: str  # the kubernetes.io/service-name label: the Service the slice belongs to
    address_type: str  # IPv4, IPv6 or FQDN; immutable
    ports: tuple[EndpointPort, ...]  # sorted
    endpoints: tuple[Endpoint, ...]  # sorted


def _pairs(mapping: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((mapping or {}).items()))


def meta_from_api(obj: Json) -> Meta:
    m = obj.get("metadata") or {}
    return Meta(
        ref=Ref(m.get("namespace", ""), m.get("name", "")),
        labels=_pairs(m.get("labels")),
        annotations=_pairs(m.get("annotations")),
        uid=m.get("uid", ""),
        resource_version=m.get("resourceVersion", ""),
    )


def service_from_api(obj: Json) -> Service:
    spec = obj.get("spec") or {}
    ports = tuple(  # in the remote's order, which a mirror keeps; compared as a set
        ServicePort(
            name=p.get("name") or "",
            protocol=p.get("protocol") or "TCP",
            port=int(p["port"]),
            target_port=p.get("targetPort") or int(p["port"]),
            app_protocol=p.get("appProtocol"),
        )
        for p in spec.get("ports") or ()
    )
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(client_ip.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    headless = spec.get("clusterIP") == "None"
    return Service(
        meta=meta_from_api(obj),
        type=spec.get("type") or "ClusterIP",
        headless=headless,
        ports=ports,
        external_name=spec.get("externalName"),
        affinity_timeout=affinity,
        ip_family_policy=spec.get("ipFamilyPolicy"),
        ip_families=tuple(spec.get("ipFamilies") or ()),
        internal_traffic_policy=spec.get("internalTrafficPolicy"),
        traffic_distribution=spec.get("trafficDistribution"),
        cluster_ips=() if headless else tuple(spec.get("clusterIPs") or ()),
    )


def _identity(raw: Json) -> dict[str, str | None]:
    """The hostname and targetRef kind and name of an address or a slice's endpoint; a
    reference without a name is not kept at all."""
    target = raw.get("targetRef") or {}
    name = target.get("name") or None
    return {
        "hostname": raw.get("hostname") or None,
        "target_kind": (target.get("kind") or None) if name else None,
        "target_name": name,
    }


def _identity_to_api(x: Address | Endpoint) -> Json:
    out: Json = {}
    if x.hostname:
        out["hostname"] = x.hostname
    if x.target_name:
        out["targetRef"] = {"name": x.target_name}
        if x.target_kind:
            out["targetRef"]["kind"] = x.target_kind
    return out


def _address(a: Json) -> Address:
    return Address(ip=a["ip"], **_identity(a))


def _endpoint_port(p: Json) -> EndpointPort:
    return EndpointPort(
        name=p.get("name") or "",
        port=int(p["port"]),
        protocol=p.get("protocol") or "TCP",
        app_protocol=p.get("appProtocol"),
    )


def subsets_from_api(subsets: list[Json] | None) -> tuple[Subset, ...]:
    """The canonical form of subsets that Kubernetes defines (`RepackSubsets`), for a mirror.

    It is what the endpoints controller writes: one address per IP and target uid, not
    ready on any port winning over ready, and the ports that share exactly the same
    addresses grouped in one subset. A mirror carries no uid, so here addresses are one per
    IP, the first by sort order kept. kube-apiserver 1.36 stores Endpoints as written, so
    what ksm-sync writes in this form reads back unchanged, and a remote and its mirror
    compare equal however either is split.
    """
    kept: dict[str, Address] = {}  # one address per IP
    readiness: dict[EndpointPort | None, dict[str, bool]] = {}  # None: a subset without ports
    for s in subsets or ():
        ports: list[EndpointPort | None] = [_endpoint_port(p) for p in s.get("ports") or ()]
        for ready, key in ((True, "addresses"), (False, "notReadyAddresses")):
            for raw in s.get(key) or ():
                address = _address(raw)
                if address.ip not in kept or _address_key(address) < _address_key(kept[address.ip]):
                    kept[address.ip] = address
                for port in ports or [None]:
                    ips = readiness.setdefault(port, {})
                    ips[address.ip] = ips.get(address.ip, True) and ready
    ports_by_addresses: dict[frozenset[tuple[str, bool]], list[EndpointPort]] = {}
    for port, ips in readiness.items():
        group = ports_by_addresses.setdefault(frozenset(ips.items()), [])
        if port is not None:
            group.append(port)
    result = [
        Subset(
            tuple(sorted(ports, key=_port_key)),
            tuple(sorted((kept[ip] for ip, ready in ips if ready), key=_address_key)),
            tuple(sorted((kept[ip] for ip, ready in ips if not ready), key=_address_key)),
        )
        for ips, ports in ports_by_addresses.items()
    ]
    return tuple(sorted(result, key=_subset_key))


# Sort keys: optional fields are None or text, which do not compare; "" stands for None.
def _port_key(p: EndpointPort) -> tuple[str, int, str, str]:
    return (p.name, -1 if p.port is None else p.port, p.protocol, p.app_protocol or "")


def _address_key(a: Address) -> tuple[str, str, str, str]:
    return (a.ip, a.hostname or "", a.target_kind or "", a.target_name or "")


def _subset_key(s: Subset) -> tuple[tuple, tuple, tuple]:
    return (
        tuple(map(_port_key, s.ports)),
        tuple(map(_address_key, s.addresses)),
        tuple(map(_address_key, s.not_ready)),
    )


def _endpoint(e: Json) -> Endpoint:
    conditions = e.get("conditions") or {}
    return Endpoint(
        addresses=tuple(e.get("addresses") or ()),
        ready=conditions.get("ready"),
        serving=conditions.get("serving"),
        terminating=conditions.get("terminating"),
        **_identity(e),
    )


def _endpoint_key(e: Endpoint) -> tuple[tuple[str, ...], str, str, str, str]:
    conditions = "".join("-" if c is None else "ny"[c] for c in (e.ready, e.serving, e.terminating))
    return (e.addresses, conditions, e.hostname or "", e.target_kind or "", e.target_name or "")


def slice_from_api(obj: Json) -> EndpointSlice:
    """An EndpointSlice as compared: ports and endpoints sorted, nodeName, zone, hints gone."""
    meta = meta_from_api(obj)
    ports = {
        EndpointPort(
            name=p.get("name") or "",
            port=p.get("port"),
            protocol=p.get("protocol") or "TCP",
            app_protocol=p.get("appProtocol"),
        )
        for p in obj.get("ports") or ()
    }
    return EndpointSlice(
        meta=meta,
        service=meta.label("kubernetes.io/service-name") or "",
        address_type=obj.get("addressType") or "IPv4",
        ports=tuple(sorted(ports, key=_port_key)),
        endpoints=tuple(sorted(map(_endpoint, obj.get("endpoints") or ()), key=_endpoint_key)),
    )


def _endpoint_to_api(e: Endpoint) -> Json:
    out: Json = {"addresses": list(e.addresses)}
    conditions = {"ready": e.ready, "serving": e.serving, "terminating": e.terminating}
    out["conditions"] = {k: v for k, v in conditions.items() if v is not None}
    return {**out, **_identity_to_api(e)}


def slice_to_api(endpoint_slice: EndpointSlice) -> Json:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta_to_api(endpoint_slice.meta),
        "addressType": endpoint_slice.address_type,
        **slice_body_to_api(endpoint_slice),
    }


def slice_body_to_api(endpoint_slice: EndpointSlice) -> Json:
    """The slice's ports and endpoints: what an update of a slice writes."""
    return {
        "ports": [{**_port_to_api(p), "name": p.name} for p in endpoint_slice.ports],
        "endpoints": [_endpoint_to_api(e) for e in endpoint_slice.endpoints],
    }


def endpoints_from_api(obj: Json) -> Endpoints:
    return Endpoints(meta=meta_from_api(obj), subsets=subsets_from_api(obj.get("subsets")))


def _meta_to_api(meta: Meta) -> Json:
    return {
        "name": meta.ref.name,
        "namespace": meta.ref.namespace,
        "labels": dict(meta.labels),
        "annotations": dict(meta.annotations),
    }


def _port_to_api(p: ServicePort | EndpointPort) -> Json:
    port: Json = {"protocol": p.protocol}
    if p.port is not None:
        port["port"] = p.port
    if p.name:
        port["name"] = p.name
    if p.app_protocol:
        port["appProtocol"] = p.app_protocol
    return port


def service_spec_to_api(service: Service) -> Json:
    ports = [{**_port_to_api(p), "targetPort": p.target_port} for p in service.ports]
    spec: Json = {"type": service.type, "ports": ports}
    if service.type == "ExternalName":
        spec["externalName"] = service.external_name
    elif service.headless:
        spec["clusterIP"] = "None"
    spec.update(affinity_to_api(service))
    if service.ip_family_policy is not None:
        spec["ipFamilyPolicy"] = service.ip_family_policy
    if service.ip_families:
        spec["ipFamilies"] = list(service.ip_families)
    return spec


def affinity_to_api(service: Service) -> Json:
    """spec.sessionAffinity and its config; null removes the config in a merge patch."""
    if service.affinity_timeout is None:
        return {"sessionAffinity": "None", "sessionAffinityConfig": None}
    config = {"clientIP": {"timeoutSeconds": service.affinity_timeout}}
    return {"sessionAffinity": "ClientIP", "sessionAffinityConfig": config}


def service_to_api(service: Service) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta_to_api(service.meta),
        "spec": service_spec_to_api(service),
    }


def _address_to_api(a: Address) -> Json:
    return {"ip": a.ip, **_identity_to_api(a)}


def subsets_to_api(subsets: tuple[Subset, ...]) -> list[Json]:
    out = []
    for s in subsets:
        subset: Json = {"ports": [_port_to_api(p) for p in s.ports]}
        if s.addresses:
            subset["addresses"] = [_address_to_api(a) for a in s.addresses]
        if s.not_ready:
            subset["notReadyAddresses"] = [_address_to_api(a) for a in s.not_ready]
        out.append(subset)
    return out


def endpoints_to_api(endpoints: Endpoints) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta_to_api(endpoints.meta),
        "subsets": subsets_to_api(endpoints.subsets),
    }


# The Multi-Cluster Services API (KEP-1645, mcs-api v0.5): v1alpha1 and v1beta1 share one
# schema, and both keep status in a subresource.


@dataclass(frozen=True, slots=True)
class Condition:
    """A metav1.Condition as ksm-sync sets it; when it last changed is kept from the object
    while its status stays, so an unchanged condition compares equal and is not written."""

    type: str
    status: str  # True, False or Unknown
    reason: str
    message: str
    observed_generation: int = 0
    last_transition: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ServiceExport:
    """A cluster's request to export the Service of the same namespace and name."""

    meta: Meta
    created: str  # metadata.creationTimestamp (RFC 3339, UTC): the oldest export wins
    generation: int
    exported_labels: tuple[tuple[str, str], ...] = ()
    exported_annotations: tuple[tuple[str, str], ...] = ()
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceImport:
    """A Service of the cluster set, as one cluster sees it."""

    meta: Meta
    type: str  # ClusterSetIP or Headless
    ports: tuple[EndpointPort, ...]  # sorted; name, protocol, port, appProtocol
    ips: tuple[str, ...] = ()  # the derived Service's cluster IPs, in ip_families' order
    ip_families: tuple[str, ...] = ()
    affinity_timeout: int | None = None
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None
    clusters: tuple[str, ...] = ()  # status.clusters: the members it is made of, sorted


def _conditions(raw: list[Json] | None) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            type=c.get("type", ""),
            status=c.get("status", ""),
            reason=c.get("reason", ""),
            message=c.get("message", ""),
            observed_generation=int(c.get("observedGeneration") or 0),
            last_transition=c.get("lastTransitionTime", ""),
        )
        for c in raw or ()
    )


def conditions_to_api(conditions: tuple[Condition, ...]) -> list[Json]:
    return [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "observedGeneration": c.observed_generation,
            "lastTransitionTime": c.last_transition,
        }
        for c in conditions
    ]


def export_from_api(obj: Json) -> ServiceExport:
    m = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return ServiceExport(
        meta=meta_from_api(obj),
        created=m.get("creationTimestamp", ""),
        generation=int(m.get("generation") or 0),
        exported_labels=_pairs(spec.get("exportedLabels")),
        exported_annotations=_pairs(spec.get("exportedAnnotations")),
        conditions=_conditions((obj.get("status") or {}).get("conditions")),
    )


def import_from_api(obj: Json) -> ServiceImport:
    spec = obj.get("spec") or {}
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(client_ip.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    clusters = ((obj.get("status") or {}).get("clusters")) or ()
    return ServiceImport(
        meta=meta_from_api(obj),
        type=spec.get("type") or "ClusterSetIP",
        ports=tuple(sorted(map(_endpoint_port, spec.get("ports") or ()), key=_port_key)),
        ips=tuple(spec.get("ips") or ()),
        ip_families=tuple(spec.get("ipFamilies") or ()),
        affinity_timeout=affinity,
        internal_traffic_policy=spec.get("internalTrafficPolicy"),
        traffic_distribution=spec.get("trafficDistribution"),
        clusters=tuple(sorted(c["cluster"] for c in clusters if c.get("cluster"))),
    )


def import_spec_to_api(service_import: ServiceImport) -> Json:
    spec: Json = {
        "type": service_import.type,
        "ports": [_port_to_api(p) for p in service_import.ports],
        "ips": list(service_import.ips),
        "ipFamilies": list(service_import.ip_families),
        "internalTrafficPolicy": service_import.internal_traffic_policy,
        "trafficDistribution": service_import.traffic_distribution,
    }
    if service_import.affinity_timeout is None:
        return {**spec, "sessionAffinity": "None", "sessionAffinityConfig": None}
    config = {"clientIP": {"timeoutSeconds": service_import.affinity_timeout}}
    return {**spec, "sessionAffinity": "ClientIP", "sessionAffinityConfig": config}


def import_status_to_api(service_import: ServiceImport) -> Json:
    return {"clusters": [{"cluster": c} for c in service_import.clusters]}


def import_to_api(service_import: ServiceImport, mcs_version: str) -> Json:
    spec = {k: v for k, v in import_spec_to_api(service_import).items() if v is not None}
    return {
        "apiVersion": f"{MCS_GROUP}/{mcs_version}",
        "kind": "ServiceImport",
        "metadata": _meta_to_api(service_import.meta),
        "spec": spec,
    }
