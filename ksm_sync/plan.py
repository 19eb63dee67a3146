"""The planner: desired mirrors vs current mirrors -> changes. Pure: no I/O, no client.

Compares only the fields ksm-sync owns (ownership labels, the remote annotations, type,
headless, ports, externalName, affinity, IP families, subsets, slices), already normalised
by `model`, so a pass over an unchanged world plans nothing.

A delete that takes a name out of DNS (a mirror that goes, or that loses all its endpoint
objects) is a delete for the policies and the guard. A delete of one endpoint object of a
mirror that keeps others (a remote slice that went, Endpoints replaced by slices) is part
of updating what the mirror answers, and is made only after the mirror's other writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ksm_sync import ownership
from ksm_sync.mirror import Mirror, Skip
from ksm_sync.model import (
    Endpoints,
    EndpointSlice,
    Kind,
    Ref,
    Service,
    ServiceExport,
    ServiceImport,
)
from ksm_sync.naming import derived_name
from ksm_sync.ownership import PREFIX_LABEL, owned, ownership_differs, remote_of

if TYPE_CHECKING:
    from ksm_sync.clusterset import Import
    from ksm_sync.observe import Imported

ORPHAN = "orphan: no Service mirror"
ORPHAN_IMPORT = "orphan: no ServiceImport"
Action = Literal["create", "update", "recreate", "delete"]
PAST: dict[Action, str] = {
    "create": "created",
    "update": "updated",
    "recreate": "recreated",
    "delete": "deleted",
}
Object = Service | Endpoints | EndpointSlice | ServiceImport | ServiceExport


@dataclass(frozen=True)
class Change:
    action: Action
    kind: Kind
    name: str  # the mirror's: changes are grouped, applied and counted per mirror
    remote: Ref | None
    desired: Object | None
    current: Object | None
    reason: str

    @property
    def object_name(self) -> str:
        """The changed object's own name: the mirror's, or one of its slices'."""
        obj = self.desired or self.current
        return obj.meta.ref.name if obj is not None else self.name


@dataclass(frozen=True)
class Policy:
    """What deletes are allowed; the filters external-dns calls policies.

    deletable_remotes None lets any stale mirror go; a set lets only mirrors of those
    remotes go (used by `loop --no-svc-sync`: remotes seen to disappear while running).
    """

    delete: bool = True
    deletable_remotes: frozenset[Ref] | None = None
    max_delete_ratio: float = 0.5
    guard_min_mirrors: int = 5


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    unchanged: int
    skipped: tuple[Skip, ...] = ()
    held: tuple[Change, ...] = ()  # deletes the policy or the guard kept back
    guard: str | None = None  # why the mass-deletion guard held deletes back
    # Mirror names another prefix's mirror holds: reported, never written.
    conflicts: tuple[Skip, ...] = ()
    # Mirrors whose remote Service has no endpoint object the selector matched: they
    # answer no address, which is worth a warning every pass.
    empty: tuple[Mirror, ...] = ()
    # Services of the cluster set whose namespace this cluster does not have: not imported.
    absent: tuple[Ref, ...] = ()


def service_change(desired: Service, current: Service) -> tuple[Action, str] | None:
    if desired.type != current.type:
        return "recreate", f"type {current.type} -> {desired.type}"
    if desired.headless != current.headless:
        flip = "ClusterIP -> headless" if desired.headless else "headless -> ClusterIP"
        return "recreate", f"{flip} (clusterIP is immutable)"
    if (families := _families_change(desired, current)) is not None:
        return families
    if set(desired.ports) != set(current.ports):  # an order change alone is no change
        return "update", "ports"
    if desired.external_name != current.external_name:
        return "update", "externalName"
    if desired.affinity_timeout != current.affinity_timeout:
        return "update", "session affinity"
    differs = ownership_differs(desired.meta, current.meta)
    return ("update", differs) if differs else None


def _families_change(desired: Service, current: Service) -> tuple[Action, str] | None:
    """How the IP families differ, as far as the mirror specifies them.

    The API server changes the policy in place (SingleStack to PreferDualStack adds the
    local cluster's other family, if it has one; back to SingleStack keeps the primary
    cluster IP), so only a change of the primary family, which is immutable, recreates.
    """
    if desired.ip_family_policy is None:
        return None
    was = f"{current.ip_family_policy} {'/'.join(current.ip_families)}"
    now = f"{desired.ip_family_policy} {'/'.join(desired.ip_families) or '(local order)'}"
    if desired.ip_families and desired.ip_families[:1] != current.ip_families[:1]:
        return "recreate", f"IP family {was} -> {now} (the primary family is immutable)"
    if desired.ip_family_policy != current.ip_family_policy:
        return "update", f"IP family policy {was} -> {now}"
    return None


def endpoints_change(desired: Endpoints, current: Endpoints) -> tuple[Action, str] | None:
    if desired.subsets != current.subsets:
        return "update", "subsets"
    differs = ownership_differs(desired.meta, current.meta)
    return ("update", differs) if differs else None


def slice_change(desired: EndpointSlice, current: EndpointSlice) -> tuple[Action, str] | None:
    if desired.address_type != current.address_type:
        return "recreate", f"address type {current.address_type} -> {desired.address_type}"
    if desired.ports != current.ports:
        return "update", "ports"
    if desired.endpoints != current.endpoints:
        return "update", "endpoints"
    differs = ownership_differs(desired.meta, current.meta)
    return ("update", differs) if differs else None


def import_change(desired: ServiceImport, current: ServiceImport) -> tuple[Action, str] | None:
    """What of a ServiceImport differs: its spec, its metadata (all of it is ksm-sync's: the
    winner's exported labels and annotations, and ours), or its status."""
    differs = [
        name
        for name, of in (
            ("type", lambda i: i.type),
            ("ports", lambda i: i.ports),
            ("ips", lambda i: (i.ips, i.ip_families)),
            ("session affinity", lambda i: i.affinity_timeout),
            ("traffic policy", lambda i: (i.internal_traffic_policy, i.traffic_distribution)),
            ("labels", lambda i: i.meta.labels),
            ("annotations", lambda i: i.meta.annotations),
            ("status clusters", lambda i: i.clusters),
        )
        if of(desired) != of(current)
    ]
    return ("update", ", ".join(differs)) if differs else None


def export_change(desired: ServiceExport, current: ServiceExport) -> tuple[Action, str] | None:
    """Whether the conditions ksm-sync sets on an export differ (when they last changed aside)."""
    if desired.conditions == current.conditions:
        return None
    now = {c.type: c for c in desired.conditions}
    was = {c.type: c for c in current.conditions}
    moved = [
        f"{t} {now[t].status}{' ' + now[t].reason if now[t].reason else ''}"
        for t in ownership.EXPORT_CONDITIONS
        if t in now and now[t] != was.get(t)
    ]
    return "update", "conditions " + ", ".join(moved)


def change_of(desired: Object, current: Object) -> tuple[Action, str] | None:
    """How current differs from desired, for any kind of object ksm-sync writes."""
    if isinstance(desired, Service) and isinstance(current, Service):
        return service_change(desired, current)
    if isinstance(desired, Endpoints) and isinstance(current, Endpoints):
        return endpoints_change(desired, current)
    if isinstance(desired, EndpointSlice) and isinstance(current, EndpointSlice):
        return slice_change(desired, current)
    if isinstance(desired, ServiceImport) and isinstance(current, ServiceImport):
        return import_change(desired, current)
    if isinstance(desired, ServiceExport) and isinstance(current, ServiceExport):
        return export_change(desired, current)
    raise TypeError(f"cannot compare {type(desired).__name__} with {type(current).__name__}")


def _deletable(remote: Ref | None, policy: Policy) -> bool:
    if not policy.delete:
        return False
    if policy.deletable_remotes is None:
        return True
    return remote is not None and remote in policy.deletable_remotes


def calculate(
    desired: Mapping[str, Mirror],
    services: Iterable[Service],
    endpoints: Iterable[Endpoints],
    *,
    prefix: str,
    policy: Policy = Policy(),
    skipped: Iterable[Skip] = (),
    slices: Iterable[EndpointSlice] = (),
) -> Plan:
    """Changes that turn the current owned mirrors into the desired ones.

    Objects that lack this prefix's ownership labels are ignored here: they can never be
    updated or deleted. A desired name that another prefix's mirror holds (`p` with Service
    `a-web`, `p-a` with `web`) is a conflict, planned as such; a create that meets anyone
    else's object is reported as a conflict by `apply`. The mirror names of skipped remotes
    are left exactly as they are: a remote that cannot be mirrored now must not take down
    what was mirrored before.
    """
    services = list(services)
    current_services = {s.meta.ref.name: s for s in services if owned(s.meta, prefix, "Service")}
    others = {
        s.meta.ref.name: label
        for s in services
        if (label := s.meta.label(PREFIX_LABEL)) != prefix and label is not None
    }
    current_endpoints = {
        e.meta.ref.name: e for e in endpoints if owned(e.meta, prefix, "Endpoints")
    }
    current_slices: dict[str, dict[str, EndpointSlice]] = {}  # by mirror, then by name
    for owned_slice in (s for s in slices if owned(s.meta, prefix, "EndpointSlice")):
        current_slices.setdefault(owned_slice.service, {})[owned_slice.meta.ref.name] = owned_slice
    skipped = tuple(skipped)
    untouchable = {skip.mirror_name for skip in skipped}  # left exactly as they are
    changes: list[Change] = []
    deletes: list[Change] = []  # deletes that take a name out of DNS: for the policies, the guard
    replaced: list[Change] = []  # deletes of endpoint objects that others replace
    conflicts: list[Skip] = []

    for name in sorted(desired):
        mirror = desired[name]
        current = current_services.get(name)
        if current is None and name in others:
            reason = (
                f"mirror name {name!r} is held by the mirror of prefix {others[name]!r}; left to it"
            )
            conflicts.append(Skip(mirror.remote, name, reason))
            continue
        recreated = False
        if current is None:
            changes.append(
                Change("create", "Service", name, mirror.remote, mirror.service, None, "new")
            )
        elif (diff := service_change(mirror.service, current)) is not None:
            action, reason = diff
            recreated = action == "recreate"
            changes.append(
                Change(action, "Service", name, mirror.remote, mirror.service, current, reason)
            )
        # The API server deletes a Service's Endpoints with it: a recreated Service mirror
        # needs its Endpoints mirror created again, or it stays empty until the next pass.
        current_ep = None if recreated else current_endpoints.get(name)
        for change in _endpoint_changes(mirror, current_ep, current_slices.get(name, {})):
            if change.action != "delete":
                changes.append(change)
            else:
                (replaced if mirror.answers else deletes).append(change)

    for name in sorted(set(current_services) - set(desired) - untouchable):
        current = current_services[name]
        remote = remote_of(current.meta)
        deletes.append(Change("delete", "Service", name, remote, None, current, "remote is gone"))
        if name in current_endpoints:
            deletes.append(
                Change("delete", "Endpoints", name, remote, None, current_endpoints[name],
                       "its Service mirror is deleted")
            )  # fmt: skip
        for _, gone in sorted(current_slices.get(name, {}).items()):
            deletes.append(
                Change("delete", "EndpointSlice", name, remote, None, gone,
                       "its Service mirror is deleted")
            )  # fmt: skip
    kept = set(desired) | set(current_services) | untouchable  # names a Service mirror holds
    for name in sorted(set(current_endpoints) - kept):
        current_ep = current_endpoints[name]
        deletes.append(
            Change(
                "delete", "Endpoints", name, remote_of(current_ep.meta), None, current_ep, ORPHAN
            )
        )
    for name in sorted(set(current_slices) - kept):
        for _, gone in sorted(current_slices[name].items()):
            deletes.append(
                Change("delete", "EndpointSlice", name, remote_of(gone.meta), None, gone, ORPHAN)
            )

    allowed, held, guard = _held_back(deletes, replaced, set(current_services), policy)
    touched = {c.name for c in changes + deletes + replaced} | {c.mirror_name for c in conflicts}
    written = [m for name, m in desired.items() if name not in others or name in current_services]
    return Plan(
        changes=tuple(changes + allowed),
        unchanged=sum(1 for name in desired if name not in touched),
        skipped=skipped,
        held=tuple(held),
        guard=guard,
        conflicts=tuple(conflicts),
        empty=tuple(m for m in written if not m.answers and m.service.type != "ExternalName"),
    )


def _endpoint_changes(
    mirror: Mirror, current_ep: Endpoints | None, current_slices: Mapping[str, EndpointSlice]
) -> list[Change]:
    """What turns a mirror's current Endpoints and slices into its desired ones."""
    name, remote = mirror.name, mirror.remote
    out: list[Change] = []
    if mirror.endpoints is None:
        if current_ep is not None:
            why = (
                "replaced by EndpointSlices" if mirror.slices else "remote Service has no endpoints"
            )
            out.append(Change("delete", "Endpoints", name, remote, None, current_ep, why))
    elif current_ep is None:
        out.append(Change("create", "Endpoints", name, remote, mirror.endpoints, None, "new"))
    elif (diff := endpoints_change(mirror.endpoints, current_ep)) is not None:
        out.append(
            Change(diff[0], "Endpoints", name, remote, mirror.endpoints, current_ep, diff[1])
        )
    why = "replaced by Endpoints" if mirror.endpoints else "its remote slice is gone"
    return out + _slice_changes(name, remote, mirror.slices, current_slices, why)


def _slice_changes(
    name: str,
    remote: Ref | None,
    wanted: Iterable[EndpointSlice],
    current: Mapping[str, EndpointSlice],
    gone_because: str,
) -> list[Change]:
    """What turns the current slices of a mirror (or an import) into the wanted ones."""
    by_name = {s.meta.ref.name: s for s in wanted}
    out: list[Change] = []
    for slice_name, want in sorted(by_name.items()):
        have = current.get(slice_name)
        if have is None:
            out.append(Change("create", "EndpointSlice", name, remote, want, None, "new"))
        elif (diff := slice_change(want, have)) is not None:
            out.append(Change(diff[0], "EndpointSlice", name, remote, want, have, diff[1]))
    for slice_name in sorted(set(current) - set(by_name)):
        out.append(Change("delete", "EndpointSlice", name, remote, None, current[slice_name],
                          gone_because))  # fmt: skip
    return out


def _held_back(
    deletes: list[Change],
    replaced: list[Change],
    existing: set[str],
    policy: Policy,
    what: str = "mirrors",
) -> tuple[list[Change], list[Change], str | None]:
    """The deletes allowed, those the policies or the guard hold back, and the guard's why.

    Replacing an endpoint object keeps the name answering: neither the guard's business nor
    --no-svc-sync's; but upsert-only deletes nothing at all.
    """
    allowed = [d for d in deletes if _deletable(d.remote, policy)]
    held = [d for d in deletes if not _deletable(d.remote, policy)]
    guard = _guard(existing, allowed, policy, what)
    if guard is not None:
        held, allowed = list(deletes), []
    if policy.delete:
        allowed += replaced
    else:
        held += replaced
    return allowed, held, guard


def _guard(
    mirrors: set[str], allowed: list[Change], policy: Policy, what: str = "mirrors"
) -> str | None:
    """Why every delete is held back, if this pass would delete or empty too many mirrors.

    A mirror that would lose its Endpoints counts as much as one that would go: either way
    its name stops answering.
    """
    existing = len(mirrors)
    deleting = {c.name for c in allowed if c.name in mirrors}
    if existing <= policy.guard_min_mirrors or len(deleting) <= policy.max_delete_ratio * existing:
        return None
    emptied = deleting - {c.name for c in allowed if c.kind in ("Service", "ServiceImport")}
    how = f" ({len(emptied)} of them by deleting their endpoints)" if emptied else ""
    return (
        f"would delete {len(deleting)} of {existing} {what}{how}, more than "
        f"--max-delete-ratio {policy.max_delete_ratio:g}: an empty or wrong remote list "
        "(label selector typo, wrong cluster) looks like this. Nothing deleted; check the "
        "remote, or raise --max-delete-ratio to allow it"
    )


def calculate_imports(
    desired: Mapping[Ref, Import],
    current: Imported,
    statuses: Iterable[ServiceExport] = (),
    exports: Iterable[ServiceExport] = (),
    *,
    cluster_id: str,
    policy: Policy = Policy(),
    untouchable: Iterable[Ref] = (),
) -> Plan:
    """Changes that turn what this cluster's ksm-sync wrote for the cluster set into what it
    should be, and the local exports' conditions into theirs.

    The same rules as `calculate`, for another unit: an import (its ServiceImport, derived
    Service and slices) is planned, applied and counted as a mirror is, named `<ns>/<name>`.
    Only objects with this cluster's cluster-set label are compared, changed or deleted. An
    import that goes takes its derived Service and slices with it, through the policies and
    the guard; a slice that goes while the import stays replaces nothing. A derived Service
    written this pass gives its import its IPs (the import is planned without them: `apply`
    fills them in). Imports of `untouchable` Services (their namespace is missing or going)
    are left as they are.
    """
    imports = {i.meta.ref: i for i in current.imports
               if ownership.clusterset_owned(i.meta, cluster_id, "ServiceImport")}  # fmt: skip
    derived = {s.meta.ref: s for s in current.derived
               if ownership.clusterset_owned(s.meta, cluster_id, "Service")}  # fmt: skip
    slices: dict[Ref, dict[str, EndpointSlice]] = {}  # by import, then by name
    for each in current.slices:
        if ownership.clusterset_owned(each.meta, cluster_id, "EndpointSlice"):
            of = Ref(each.meta.ref.namespace, each.meta.label(ownership.MCS_SERVICE_LABEL) or "")
            slices.setdefault(of, {})[each.meta.ref.name] = each
    left = set(untouchable)
    changes: list[Change] = []
    deletes: list[Change] = []  # deletes that take a Service of the set out of DNS
    replaced: list[Change] = []  # a member's slice gone, or the derived Service of a flip

    for ref in sorted(desired, key=lambda r: (r.namespace, r.name)):
        want, name = desired[ref], str(ref)
        have_derived = derived.get(Ref(ref.namespace, derived_name(ref.namespace, ref.name)))
        service_import = want.service_import
        if want.derived is not None:
            diff = (
                ("create", "new")
                if have_derived is None
                else service_change(want.derived, have_derived)
            )
            if diff is not None:
                action, reason = diff
                changes.append(
                    Change(action, "Service", name, ref, want.derived, have_derived, reason)
                )
                service_import = replace(service_import, ips=(), ip_families=())
        elif have_derived is not None:
            replaced.append(Change("delete", "Service", name, ref, None, have_derived,
                                   "the import is headless now"))  # fmt: skip
        have = imports.get(ref)
        if have is None:
            changes.append(Change("create", "ServiceImport", name, ref, service_import, None,
                                  "new"))  # fmt: skip
        elif (diff := import_change(service_import, have)) is not None:
            changes.append(Change(diff[0], "ServiceImport", name, ref, service_import, have,
                                  diff[1]))  # fmt: skip
        gone = "its member's slice is gone"
        for change in _slice_changes(name, ref, want.slices, slices.get(ref, {}), gone):
            if change.action != "delete":
                changes.append(change)
            else:
                (replaced if want.slices else deletes).append(change)

    for ref in sorted(set(imports) - set(desired) - left, key=lambda r: (r.namespace, r.name)):
        name, why = str(ref), "no member exports it any more"
        deletes.append(Change("delete", "ServiceImport", name, ref, None, imports[ref], why))
        if have_derived := derived.get(Ref(ref.namespace, derived_name(ref.namespace, ref.name))):
            deletes.append(Change("delete", "Service", name, ref, None, have_derived, why))
        for _, gone in sorted(slices.get(ref, {}).items()):
            deletes.append(Change("delete", "EndpointSlice", name, ref, None, gone, why))
    kept = set(desired) | set(imports) | left
    derived_of = {Ref(r.namespace, derived_name(r.namespace, r.name)): r for r in kept}
    for derived_ref, orphan in sorted(derived.items(), key=lambda kv: str(kv[0])):
        if derived_ref not in derived_of:
            deletes.append(Change("delete", "Service", str(derived_ref), None, None, orphan,
                                  ORPHAN_IMPORT))  # fmt: skip
    for ref in sorted(set(slices) - kept, key=lambda r: (r.namespace, r.name)):
        for _, gone in sorted(slices[ref].items()):
            deletes.append(Change("delete", "EndpointSlice", str(ref), None, None, gone,
                                  ORPHAN_IMPORT))  # fmt: skip

    was = {e.meta.ref: e for e in exports}
    for status in statuses:
        before = was.get(status.meta.ref)
        if before is not None and (diff := export_change(status, before)) is not None:
            ref = status.meta.ref
            changes.append(Change(diff[0], "ServiceExport", str(ref), ref, status, before, diff[1]))

    existing = {str(r) for r in imports}
    allowed, held, guard = _held_back(deletes, replaced, existing, policy, "ServiceImports")
    touched = {c.name for c in changes + deletes + replaced}
    return Plan(
        changes=tuple(changes + allowed),
        unchanged=sum(1 for ref in desired if str(ref) not in touched),
        held=tuple(held),
        guard=guard,
        absent=tuple(sorted(left, key=lambda r: (r.namespace, r.name))),
    )
