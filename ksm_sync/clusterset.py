"""The cluster set's merge: every member's exports -> what this cluster should import.

The Multi-Cluster Services API (KEP-1645): a Service exported (a ServiceExport of the same
namespace and name) by any member of the set is imported by every member that has its
namespace, the exporting ones included. Locally, each exported Service becomes:

- a ServiceImport of the same namespace and name, carrying the winner's exported labels and
  annotations, and listing the members it is made of in `status.clusters`;
- for a ClusterSetIP import, a derived Service (selectorless ClusterIP, named as mcs-api's
  reference controllers name it, and given on the import by an annotation) whose cluster IPs
  are the import's `ips`, so that kube-proxy routes them;
- one EndpointSlice per slice of each exporting member, labelled with the Service's name and
  the member it came from (and, for ClusterSetIP, tied to the derived Service), never to the
  exported Service itself: in the exporting cluster that would add every other member's pods to
  that Service's own `cluster.local` answers.

Rules (the KEP's): the members' Services are merged by namespace and name. The oldest export
(creationTimestamp, then cluster id) wins what cannot be merged: headlessness, session
affinity, traffic policy and distribution, exported labels and annotations; ports are the
union, merged by name, then by protocol and port, the oldest winning a clash. Any difference
between the exported Services is a Conflict, reported on every export involved: each member's
ksm-sync writes the conditions of its own exports.

An export whose Service is missing, or is an ExternalName, is not valid and imports nothing.
A member that could not be read keeps what it contributed (its slices, its place in
`status.clusters`, the import's shape) for `unreachable_after`, as global services do; when
it was first missed is recorded on the import.

Pure: the pass gives it what it observed and the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ksm_sync import ownership
from ksm_sync.merge import read_record, record
from ksm_sync.model import (
    Condition,
    EndpointPort,
    EndpointSlice,
    Meta,
    Ref,
    Service,
    ServiceExport,
    ServiceImport,
    ServicePort,
)
from ksm_sync.naming import derived_name, mcs_slice_name
from ksm_sync.observe import Exported, Imported


@dataclass(frozen=True)
class Member:
    """One member of the cluster set as read this pass; None: it could not be read."""

    cluster: str
    exported: Exported | None


@dataclass(frozen=True)
class Import:
    """What one Service of the cluster set should be here."""

    service_import: ServiceImport  # ips empty for a derived Service not made yet: see apply
    derived: Service | None  # ClusterSetIP only
    slices: tuple[EndpointSlice, ...]

    @property
    def ref(self) -> Ref:
        return self.service_import.meta.ref


@dataclass(frozen=True)
class Merged:
    imports: dict[Ref, Import]
    statuses: list[ServiceExport]  # the local exports, with the conditions they should have
    absent: list[Ref]  # exported Services whose namespace this cluster does not have


@dataclass(frozen=True)
class _Offer:
    """A member's valid export, with its Service and that Service's slices."""

    cluster: str
    export: ServiceExport
    service: Service
    slices: tuple[EndpointSlice, ...]


def merge_imports(
    members: Sequence[Member],
    local_id: str,
    current: Imported,
    *,
    now: float,
    unreachable_after: float,
) -> Merged:
    offers, invalid = _offers(members)
    unreachable = [m.cluster for m in members if m.exported is None]
    current_imports = {i.meta.ref: i for i in current.imports}
    derived_now = {(s.meta.ref.namespace, s.meta.ref.name): s for s in current.derived}
    kept: dict[Ref, dict[str, list[EndpointSlice]]] = {}  # import -> member -> its slices
    for have in current.slices:
        ref = Ref(have.meta.ref.namespace, have.meta.label(ownership.MCS_SERVICE_LABEL) or "")
        cluster = have.meta.label(ownership.MCS_SOURCE_LABEL) or ""
        kept.setdefault(ref, {}).setdefault(cluster, []).append(have)

    imports: dict[Ref, Import] = {}
    absent: list[Ref] = []
    conflicts: dict[Ref, tuple[list[str], str]] = {}
    for ref in sorted(set(offers) | set(current_imports), key=lambda r: (r.namespace, r.name)):
        have = current_imports.get(ref)
        # The members away that this import was made of, since when; those still within
        # their time keep their say. Only they are recorded: an import another member alone
        # makes is not rewritten because one that had nothing in it is away.
        made_of = have.clusters if have else ()
        recorded = read_record(have.meta) if have and unreachable else {}
        since = {c: recorded.get(c, now) for c in unreachable if c in made_of}
        waiting = {c for c, t in since.items() if now - t <= unreachable_after}
        ref_offers = sorted(offers.get(ref, []), key=lambda o: (o.export.created, o.cluster))
        if not ref_offers and not waiting:
            continue  # nobody exports it any more
        if ref.namespace not in current.namespaces:
            absent.append(ref)
            continue
        if ref_offers:
            conflicts[ref] = _conflicts(ref_offers)
        annotation = record(since) if since else None  # none while every member answers
        if waiting and have is not None:  # the shape stays while a contributor is away
            service_import = replace(
                have,
                meta=_with(have.meta, annotation),
                clusters=tuple(sorted({*(o.cluster for o in ref_offers), *waiting})),
            )
        else:
            service_import = _import(ref, ref_offers, local_id, annotation)
        derived = _derived(service_import, ref_offers, local_id, derived_now)
        if derived is not None and derived_now.get((ref.namespace, derived.meta.ref.name)):
            have_derived = derived_now[(ref.namespace, derived.meta.ref.name)]
            service_import = replace(
                service_import, ips=have_derived.cluster_ips, ip_families=have_derived.ip_families
            )
        slices = [
            _slice(s, o.cluster, service_import, local_id) for o in ref_offers for s in o.slices
        ]
        slices += [s for cluster in sorted(waiting) for s in kept.get(ref, {}).get(cluster, ())]
        imports[ref] = Import(service_import, derived, tuple(slices))

    return Merged(imports, _statuses(members, local_id, invalid, conflicts, now), absent)


def _offers(
    members: Sequence[Member],
) -> tuple[dict[Ref, list[_Offer]], dict[tuple[str, Ref], str]]:
    """Every valid export by Service, and why each invalid one (by member) is invalid."""
    offers: dict[Ref, list[_Offer]] = {}
    invalid: dict[tuple[str, Ref], str] = {}
    for member in members:
        if member.exported is None:
            continue
        services = {s.meta.ref: s for s in member.exported.services}
        slices: dict[Ref, list[EndpointSlice]] = {}
        for each in member.exported.slices:
            slices.setdefault(Ref(each.meta.ref.namespace, each.service), []).append(each)
        for export in member.exported.exports:
            ref = export.meta.ref
            service = services.get(ref)
            if service is None:
                invalid[(member.cluster, ref)] = "NoService"
            elif service.type == "ExternalName":
                invalid[(member.cluster, ref)] = "InvalidServiceType"
            else:
                offer = _Offer(member.cluster, export, service, tuple(slices.get(ref, ())))
                offers.setdefault(ref, []).append(offer)
    return offers, invalid


def _with(meta: Meta, annotation: tuple[str, str] | None) -> Meta:
    annotations = dict(meta.annotations)
    annotations.pop(ownership.UNREACHABLE_ANNOTATION, None)
    if annotation is not None:
        annotations[annotation[0]] = annotation[1]
    return replace(meta, annotations=tuple(sorted(annotations.items())))


def _import(
    ref: Ref, offers: list[_Offer], local_id: str, annotation: tuple[str, str] | None
) -> ServiceImport:
    winner = offers[0]
    headless = winner.service.headless
    annotations = dict(winner.export.exported_annotations)
    if annotation is not None:
        annotations[annotation[0]] = annotation[1]
    if not headless:
        annotations[ownership.DERIVED_ANNOTATION] = derived_name(ref.namespace, ref.name)
    return ServiceImport(
        meta=ownership.clusterset_meta(
            ref, local_id, winner.export.exported_labels, annotations.items()
        ),
        type="Headless" if headless else "ClusterSetIP",
        ports=_union(offers),
        ip_families=winner.service.ip_families if headless else (),
        affinity_timeout=winner.service.affinity_timeout,
        internal_traffic_policy=winner.service.internal_traffic_policy,
        traffic_distribution=winner.service.traffic_distribution,
        clusters=tuple(sorted({o.cluster for o in offers})),
    )


def _port(p: ServicePort) -> EndpointPort:
    return EndpointPort(p.name, p.port, p.protocol, p.app_protocol)


def _union(offers: list[_Offer]) -> tuple[EndpointPort, ...]:
    """Every member's ports, merged by name, then by protocol and port; the oldest's first."""
    ports: list[EndpointPort] = []
    names: set[str] = set()
    keys: set[tuple[str, int | None]] = set()
    for offer in offers:
        for port in map(_port, offer.service.ports):
            if port.name in names or (port.protocol, port.port) in keys:
                continue
            names.add(port.name)
            keys.add((port.protocol, port.port))
            ports.append(port)
    return tuple(sorted(ports, key=lambda p: (p.name, p.port or 0, p.protocol)))


def _derived(
    service_import: ServiceImport,
    offers: list[_Offer],
    local_id: str,
    current: dict[tuple[str, str], Service],
) -> Service | None:
    """The derived Service of a ClusterSetIP import: what kube-proxy routes its IPs by.

    Its IP families are the winner's that this cluster can allocate: the winner's one family
    (SingleStack), or its primary first and the other if this cluster has it (PreferDualStack;
    naming both would be refused where the second is not configured). A family this cluster
    lacks is refused by the API server, and the import skipped with the reason. Its cluster
    IPs then become the import's, in the order the server gave them.
    """
    if service_import.type != "ClusterSetIP":
        return None
    ref = service_import.meta.ref
    name = derived_name(ref.namespace, ref.name)
    meta = ownership.clusterset_meta(
        Ref(ref.namespace, name), local_id, [(ownership.MCS_SERVICE_LABEL, ref.name)]
    )
    ports = tuple(
        ServicePort(p.name, p.protocol, p.port or 0, p.port or 0, p.app_protocol)
        for p in service_import.ports
    )
    families: tuple[str, ...] = ()
    if offers:
        families = offers[0].service.ip_families
    elif have := current.get((ref.namespace, name)):  # only members away have it: keep it
        families = have.ip_families
    policy = {0: None, 1: "SingleStack"}.get(len(families), "PreferDualStack")
    return Service(
        meta=meta,
        type="ClusterIP",
        headless=False,
        ports=ports,
        affinity_timeout=service_import.affinity_timeout,
        ip_family_policy=policy,
        ip_families=families[:1],
    )


def _slice(
    source: EndpointSlice, cluster: str, service_import: ServiceImport, local_id: str
) -> EndpointSlice:
    """A member's slice as the cluster set's: its addresses, ports and conditions as they are
    (nodeName, zone and hints are gone already: they name the member's nodes and zones)."""
    ref = service_import.meta.ref
    labels = {
        ownership.MCS_SERVICE_LABEL: ref.name,
        ownership.MCS_SOURCE_LABEL: cluster,
        ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY,
    }
    service = ""
    if service_import.type == "ClusterSetIP":
        service = derived_name(ref.namespace, ref.name)
        labels[ownership.SERVICE_NAME_LABEL] = service
    name = mcs_slice_name(ref.name, cluster, source.meta.ref.name)
    meta = ownership.clusterset_meta(Ref(ref.namespace, name), local_id, labels.items())
    return EndpointSlice(meta, service, source.address_type, source.ports, source.endpoints)


# Conflicts: what differs between the exported Services, by the KEP's reason; _ASIDE where a
# Service has nothing to compare (the timeout of no affinity).
_ASIDE = object()
_CONFLICTS = (
    ("TypeConflict", "headlessness", lambda o: o.service.headless),
    ("PortConflict", "ports", lambda o: frozenset(map(_port, o.service.ports))),
    ("SessionAffinityConflict", "session affinity", lambda o: o.service.affinity_timeout is None),
    ("SessionAffinityConfigConflict", "session affinity timeout",
     lambda o: _ASIDE if o.service.affinity_timeout is None else o.service.affinity_timeout),
    ("InternalTrafficPolicyConflict", "internal traffic policy",
     lambda o: o.service.internal_traffic_policy or "Cluster"),
    ("TrafficDistributionConflict", "traffic distribution",
     lambda o: o.service.traffic_distribution),
    ("IPFamilyConflict", "IP families", lambda o: frozenset(o.service.ip_families)),
    ("LabelsConflict", "exported labels", lambda o: o.export.exported_labels),
    ("AnnotationsConflict", "exported annotations", lambda o: o.export.exported_annotations),
)  # fmt: skip


def _conflicts(offers: list[_Offer]) -> tuple[list[str], str]:
    """The KEP's reasons for what the exports disagree on, and a message saying so."""
    if len(offers) < 2:
        return [], ""  # one export agrees with itself (most imports: worth the shortcut)
    reasons, what = [], []
    for reason, name, of in _CONFLICTS:
        values = {value for o in offers if (value := of(o)) is not _ASIDE}
        if len(values) > 1:
            reasons.append(reason)
            what.append(name)
    if not reasons:
        return [], ""
    winner = offers[0]
    message = (
        f"the exported Services differ in {', '.join(what)} across {len(offers)} clusters; "
        f"the oldest export's, in {winner.cluster}, is used"
        + (" (ports are the union)" if "PortConflict" in reasons else "")
    )
    return reasons, message


def _statuses(
    members: Sequence[Member],
    local_id: str,
    invalid: dict[tuple[str, Ref], str],
    conflicts: dict[Ref, tuple[list[str], str]],
    now: float,
) -> list[ServiceExport]:
    """The local cluster's exports with the conditions they should have."""
    local = next((m for m in members if m.cluster == local_id), None)
    if local is None or local.exported is None:
        return []
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for export in local.exported.exports:
        ref = export.meta.ref
        wanted = _conditions(invalid.get((local_id, ref)), conflicts.get(ref, ([], "")), ref)
        have = {c.type: c for c in export.conditions}
        ours = []
        for condition in wanted:
            before = have.get(condition.type)
            since = before.last_transition if before and before.status == condition.status else ""
            ours.append(
                replace(
                    condition,
                    observed_generation=export.generation,
                    last_transition=since or stamp,
                )
            )
        others = tuple(c for c in export.conditions if c.type not in ownership.EXPORT_CONDITIONS)
        out.append(replace(export, conditions=(*others, *ours)))
    return out


def _conditions(invalid: str | None, conflict: tuple[list[str], str], ref: Ref) -> list[Condition]:
    if invalid == "NoService":
        why = f"there is no Service {ref} to export"
        return [Condition("Valid", "False", invalid, why),
                Condition("Ready", "False", "Failed", f"not exported: {why}")]  # fmt: skip
    if invalid is not None:
        why = "an ExternalName Service cannot be exported"
        return [Condition("Valid", "False", invalid, why),
                Condition("Ready", "False", "Failed", f"not exported: {why}")]  # fmt: skip
    reasons, message = conflict
    return [
        Condition("Valid", "True", "Valid", "the Service is valid for export"),
        Condition("Ready", "True", "Exported", "the Service is exported to the cluster set"),
        Condition("Conflict", "True", ",".join(reasons), message)
        if reasons
        else Condition("Conflict", "False", "NoConflicts", "the exported Services agree"),
    ]
