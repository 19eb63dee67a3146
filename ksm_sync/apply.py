"""Apply: write a plan's changes, concurrently per mirror, each object on its own.

Every write is conditional: updates carry the resourceVersion they were computed from,
deletes the uid and resourceVersion they judged ours. A write that collides (409) reads the
object again and asks `ownership.holder` who has it: someone else's is a conflict and stays
untouched; ours, or gone, is a race the next pass settles.

The cluster set's objects are written in their Services' own namespaces: a namespace
missing, or being deleted, is a skipped change there, not a failed pass. A ServiceImport's
status (the members it is made of) and a ServiceExport's conditions are written through the
status subresource. A ClusterSetIP import takes its IPs from its derived Service, written just
before it in the same group.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import groupby
from typing import Literal

from loguru import logger

from ksm_sync import ownership
from ksm_sync.kube import ApiError, Kube, NotSent
from ksm_sync.model import (
    Endpoints,
    EndpointSlice,
    Json,
    Kind,
    Meta,
    Service,
    ServiceExport,
    ServiceImport,
    affinity_to_api,
    collection_path,
    conditions_to_api,
    endpoints_from_api,
    endpoints_to_api,
    export_from_api,
    import_from_api,
    import_spec_to_api,
    import_status_to_api,
    import_to_api,
    service_from_api,
    service_spec_to_api,
    service_to_api,
    slice_body_to_api,
    slice_from_api,
    slice_to_api,
    subsets_to_api,
)
from ksm_sync.naming import derived_name
from ksm_sync.plan import PAST, Change, Object, change_of, import_change

Result = Literal["done", "conflict", "skipped", "failed", "raced", "abandoned"]
UPDATE_ATTEMPTS = 3


@dataclass(frozen=True)
class Outcome:
    change: Change
    result: Result
    detail: str = ""


class NamespaceMissing(Exception):
    """The mirror namespace does not exist: no write in it can succeed."""


def _namespace_gone(change: Change, error: ApiError) -> Outcome | None:
    """A cluster set object's namespace missing (404 on create) or being deleted (403)."""
    namespace = _meta(change).ref.namespace
    if error.status == 404 and change.action in ("create", "recreate"):
        return Outcome(change, "skipped", f"namespace {namespace} does not exist here")
    if error.status == 403 and "being terminated" in error.reason:
        return Outcome(change, "skipped", f"namespace {namespace} is being deleted")
    return None


def _meta(change: Change) -> Meta:
    """The metadata of what a change writes: its ownership labels say whose it is."""
    obj = change.desired or change.current
    assert obj is not None
    return obj.meta


class _Writer:
    def __init__(self, kube: Kube, namespace: str, mcs_version: str) -> None:
        self.kube, self.namespace, self.mcs_version = kube, namespace, mcs_version
        # The cluster IPs (and families) of the derived Services written this pass, by
        # namespace and name: each group writes its own, so no two threads share a key.
        self.derived: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def _path(self, change: Change, name: str = "", subresource: str = "") -> str:
        namespace = _meta(change).ref.namespace
        path = collection_path(change.kind, namespace, mcs_version=self.mcs_version)
        return "/".join(p for p in (path, name, subresource) if p)

    def _written(self, change: Change, answer: Json) -> None:
        """Keeps a derived Service's cluster IPs, as the server gave them, for its import."""
        meta = _meta(change)
        if change.kind == "Service" and meta.label(ownership.CLUSTER_SET_LABEL) is not None:
            self.derived[meta.ref.namespace, meta.ref.name] = _ips(answer)

    def _with_ips(self, change: Change) -> Change:
        """A ClusterSetIP import planned without IPs gets its derived Service's."""
        service_import = change.desired
        if (
            not isinstance(service_import, ServiceImport)
            or service_import.type != "ClusterSetIP"
            or service_import.ips
        ):
            return change
        namespace = service_import.meta.ref.namespace
        derived = derived_name(namespace, service_import.meta.ref.name)
        if (namespace, derived) not in self.derived:  # written by an earlier pass
            path = f"{collection_path('Service', namespace)}/{derived}"
            self.derived[namespace, derived] = _ips(self.kube.request("GET", path))
        ips, families = self.derived[namespace, derived]
        return replace(change, desired=replace(service_import, ips=ips, ip_families=families))

    def apply(self, change: Change) -> Outcome:
        """Writes one change; its outcome names the change as planned (reports count it)."""
        return replace(self._write(self._with_ips(change)), change=change)

    def _write(self, change: Change) -> Outcome:
        if isinstance(change.desired, ServiceExport):  # the users' object: its conditions only
            return self._status_only(
                change, {"conditions": conditions_to_api(change.desired.conditions)}
            )
        if change.action == "create":
            return self._create(change)
        if change.action == "update":
            return self._update(change)
        if change.action == "delete":
            return self._delete(change)
        deleted = self._delete(change)
        return self._create(change) if deleted.result == "done" else deleted

    def _create(self, change: Change) -> Outcome:
        assert change.desired is not None
        body = _to_api(change.desired, self.mcs_version)
        try:
            answer = self.kube.request("POST", self._path(change), body=body)
            self._written(change, answer)
            if isinstance(change.desired, ServiceImport) and change.desired.clusters:
                version = (answer.get("metadata") or {}).get("resourceVersion", "")
                self._status(change, version, import_status_to_api(change.desired))
            return Outcome(change, "done")
        except ApiError as error:
            if error.status == 404 and _meta(change).ref.namespace == self.namespace:
                raise NamespaceMissing(self.namespace) from None
            if (gone := _namespace_gone(change, error)) is not None:
                return gone
            if (family := _family_unavailable(change, error)) is not None:
                return family
            if error.status != 409:
                raise
        existing = self._get(change)
        held_by = ownership.holder(existing.meta if existing else None, _meta(change), change.kind)
        if held_by == "ours":
            return Outcome(change, "raced", "created meanwhile by another ksm-sync; next pass")
        if held_by == "gone":
            return Outcome(change, "raced", "deleted again since the create failed; next pass")
        return Outcome(
            change,
            "conflict",
            f"a {change.kind} named {change.object_name} already exists without the labels of "
            f"{ownership.owner(_meta(change))}; left untouched",
        )

    def _status(self, change: Change, version: str, status: Json) -> None:
        """A status subresource (an import's members, an export's conditions), conditional
        on the version read or just written."""
        self.kube.request(
            "PATCH",
            self._path(change, change.object_name, "status"),
            body={"metadata": {"resourceVersion": version}, "status": status},
            content_type="application/merge-patch+json",
        )

    def _status_only(self, change: Change, status: Json) -> Outcome:
        """A change to a status alone: a collision is only a race (the next pass computes it
        again from what it then reads)."""
        assert change.current is not None
        try:
            self._status(change, change.current.meta.resource_version, status)
        except ApiError as error:
            if error.status not in (404, 409):
                raise
            return Outcome(change, "raced", "changed since observed; next pass")
        return Outcome(change, "done")

    def _get(self, change: Change) -> Object | None:
        try:
            obj = self.kube.request("GET", self._path(change, change.object_name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return _FROM_API[change.kind](obj)

    def _update(self, change: Change) -> Outcome:
        current = change.current
        assert current is not None and change.desired is not None
        desired = change.desired
        if (
            isinstance(desired, ServiceImport)
            and isinstance(current, ServiceImport)
            and import_change(desired, replace(current, clusters=desired.clusters)) is None
        ):  # the members alone changed: the status, and nothing else
            return self._status_only(change, import_status_to_api(desired))
        for _ in range(UPDATE_ATTEMPTS):
            try:
                answer = self.kube.request(
                    "PATCH",
                    self._path(change, change.object_name),
                    body=_patch(change.desired, current),
                    content_type="application/merge-patch+json",
                )
                self._written(change, answer)
                if (
                    isinstance(desired, ServiceImport)
                    and isinstance(current, ServiceImport)
                    and desired.clusters != current.clusters
                ):
                    version = (answer.get("metadata") or {}).get("resourceVersion", "")
                    self._status(change, version, import_status_to_api(desired))
                return Outcome(change, "done")
            except ApiError as error:
                if error.status == 404:  # e.g. Endpoints dropped with a Service recreated meanwhile
                    return Outcome(change, "raced", "deleted since observed; next pass")
                if (family := _family_unavailable(change, error)) is not None:
                    return family
                if error.status != 409:
                    raise
            fresh = self._get(change)  # changed since observed: look again
            if fresh is None:
                return Outcome(change, "raced", "deleted since observed; next pass")
            if ownership.holder(fresh.meta, _meta(change), change.kind) == "theirs":
                return Outcome(change, "conflict", "no longer ours since observed; left untouched")
            differs = change_of(change.desired, fresh)
            if differs is None:
                return Outcome(change, "raced", "already up to date")
            if differs[0] == "recreate":
                return Outcome(change, "raced", "changed type meanwhile; next pass")
            current = fresh
        return Outcome(change, "failed", f"still changing after {UPDATE_ATTEMPTS} attempts")

    def _delete(self, change: Change) -> Outcome:
        """Deletes the object exactly as it was judged ours: same uid, same resourceVersion.

        Someone may take an object over between the list and the delete (remove our
        labels): the delete then meets a 409, and the object is read again and left alone.
        """
        current = change.current
        assert current is not None
        preconditions = {"uid": current.meta.uid, "resourceVersion": current.meta.resource_version}
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": preconditions}
        try:
            self.kube.request("DELETE", self._path(change, change.object_name), body=body)
        except ApiError as error:
            if error.status == 404:
                return Outcome(change, "done", "already gone")
            if error.status != 409:
                raise
        else:
            return Outcome(change, "done")
        fresh = self._get(change)
        if fresh is None:
            return Outcome(change, "done", "already gone")
        if ownership.holder(fresh.meta, _meta(change), change.kind) == "theirs":
            return Outcome(change, "conflict", "no longer ours since observed; left untouched")
        return Outcome(change, "raced", "changed since observed; next pass")


def _family_unavailable(change: Change, error: ApiError) -> Outcome | None:
    """A 422 because the local cluster has no service range of the family the remote needs."""
    if error.status == 422 and "not configured" in error.reason:
        why = f"the local cluster cannot give it the remote's IP family: {error.reason}"
        return Outcome(change, "skipped", why)
    return None


_FROM_API: dict[Kind, Callable[[Json], Object]] = {
    "Service": service_from_api,
    "Endpoints": endpoints_from_api,
    "EndpointSlice": slice_from_api,
    "ServiceImport": import_from_api,
    "ServiceExport": export_from_api,
}


def _ips(service: Json) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A Service's cluster IPs and their families, in the order the server gave them."""
    spec = service.get("spec") or {}
    return tuple(spec.get("clusterIPs") or ()), tuple(spec.get("ipFamilies") or ())


def _to_api(obj: Object, mcs_version: str) -> Json:
    if isinstance(obj, Service):
        return service_to_api(obj)
    if isinstance(obj, Endpoints):
        return endpoints_to_api(obj)
    if isinstance(obj, ServiceImport):
        return import_to_api(obj, mcs_version)
    assert isinstance(obj, EndpointSlice)
    return slice_to_api(obj)


def _removed(desired: tuple[tuple[str, str], ...], current: tuple[tuple[str, str], ...]) -> Json:
    """A merge patch's map of desired, with null for each key of current it no longer has."""
    return {**dict.fromkeys(k for k, _ in current), **dict(desired)}


def _patch(desired: Object, current: Object) -> Json:
    meta = desired.meta
    patch: Json = {
        "metadata": {
            "resourceVersion": current.meta.resource_version,
            "labels": dict(meta.labels),
            "annotations": dict(meta.annotations),
        }
    }
    if isinstance(desired, ServiceImport):  # all of its metadata is ksm-sync's
        patch["metadata"]["labels"] = _removed(meta.labels, current.meta.labels)
        patch["metadata"]["annotations"] = _removed(meta.annotations, current.meta.annotations)
        patch["spec"] = import_spec_to_api(desired)
    elif isinstance(desired, Service):
        spec = service_spec_to_api(desired)
        patch["spec"] = {"ports": spec["ports"]}
        if "externalName" in spec:
            patch["spec"]["externalName"] = spec["externalName"]
        else:
            patch["spec"].update(affinity_to_api(desired))
            for key in ("ipFamilyPolicy", "ipFamilies"):  # changed in place: see plan
                if key in spec:
                    patch["spec"][key] = spec[key]
    elif isinstance(desired, Endpoints):
        patch["subsets"] = subsets_to_api(desired.subsets)
    else:
        assert isinstance(desired, EndpointSlice)
        patch.update(slice_body_to_api(desired))
    return patch


def apply(
    changes: Iterable[Change],
    kube: Kube,
    namespace: str,
    *,
    concurrency: int,
    on_outcome: Callable[[Outcome], None] | None = None,
    mcs_version: str = "",
) -> list[Outcome]:
    """Applies changes mirror by mirror, mirrors concurrently.

    Within a mirror: its Service first, then the writes of its endpoints, then their
    deletes, each only if all before it were written. So the Endpoints replaced by slices
    (or a slice replaced by others) go only once what replaces them is there, and the name
    never answers nothing meanwhile.

    Raises NamespaceMissing when the mirror namespace is absent; other failures are
    outcomes of their own object and never stop the rest. Changes `kube` will not send (past
    the pass deadline, or stopping) are abandoned: the next pass makes them.
    """
    writer = _Writer(kube, namespace, mcs_version)
    missing = threading.Event()
    # One group per mirror of one prefix: a prefix whose write meets another's mirror of the
    # same name blocks only its own writes.
    ordered = sorted(changes, key=lambda c: (c.name, ownership.owner(_meta(c)), _order(c)))
    groups = [
        list(g) for _, g in groupby(ordered, key=lambda c: (c.name, ownership.owner(_meta(c))))
    ]

    def run(group: list[Change]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        blocked: Result | None = None  # its Service mirror (or ServiceImport) was not written
        unwritten: Result | None = None  # one of its endpoint writes was not made: why
        blocked_kind = ""
        for change in group:
            if missing.is_set():
                outcomes.append(Outcome(change, "abandoned", "mirror namespace missing"))
                continue
            if blocked:
                why = f"not attempted: its {blocked_kind} was not written ({blocked})"
                outcomes.append(Outcome(change, blocked, why))
                continue
            if unwritten and change.action == "delete":
                why = f"not attempted: what replaces it was not written ({unwritten})"
                outcomes.append(Outcome(change, unwritten, why))
                continue
            try:
                outcome = writer.apply(change)
            except NotSent as error:
                outcome = Outcome(change, "abandoned", error.reason)
            except ApiError as error:
                outcome = Outcome(change, "failed", str(error))
            except NamespaceMissing:
                missing.set()
                outcome = Outcome(change, "abandoned", "mirror namespace missing")
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
            if outcome.result in ("conflict", "skipped", "failed", "abandoned"):
                if change.kind in ("Service", "ServiceImport") and change.action != "delete":
                    blocked = outcome.result
                    blocked_kind = "Service mirror" if change.kind == "Service" else change.kind
                else:
                    unwritten = outcome.result
        return outcomes

    with ThreadPoolExecutor(max_workers=max(concurrency, 1), thread_name_prefix="apply") as pool:
        context = contextvars.copy_context()  # log fields such as the pass id, in every thread
        runs = pool.map(lambda group: context.copy().run(run, group), groups)
        results = [o for outcomes in runs for o in outcomes]
    if missing.is_set():
        raise NamespaceMissing(namespace)
    return results


def _order(change: Change) -> int:
    if change.kind == "Service":
        return 0
    return 2 if change.action == "delete" else 1


def log_outcome(outcome: Outcome) -> None:
    c = outcome.change
    name = c.object_name
    fields = {"object": f"{c.kind}/{name}", "change": c.action, "result": outcome.result}
    if c.remote:
        fields["remote"] = str(c.remote)
    log = logger.bind(**fields, reason=outcome.detail or c.reason)
    if outcome.result == "done":
        log.info("{} {} {} ({})", PAST[c.action], c.kind, name, c.reason)
    elif outcome.result == "raced":
        log.info("{} {} {}: {}", c.action, c.kind, name, outcome.detail)
    elif outcome.result == "conflict":
        log.warning("conflict on {} {}: {}", c.kind, name, outcome.detail)
    elif outcome.result == "skipped":
        log.warning("skipped {} {}: {}", c.kind, name, outcome.detail)
    elif outcome.result == "failed":
        log.error("failed to {} {} {}: {}", c.action, c.kind, name, outcome.detail)
