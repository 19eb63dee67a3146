"""Ownership: what makes a local object ksm-sync's, and what it records of the remote.

Everything that decides whether ksm-sync may write an object lives here, so that "never
updates or deletes what it does not own" can be audited in one file (external-dns keeps
this in its registry). An object is owned by a prefix when it carries both labels below
with that prefix: the labels kube-service-mirror set, so its mirrors are adopted as they
are. The remote a mirror stands for is recorded in two annotations; mirrors made by
kube-service-mirror lack them and get them on their first pass.

The cluster set's objects (ServiceImports, derived Services, MCS EndpointSlices) are owned
by the local cluster's id, in one label of ksm-sync's. ServiceExports are the users': ksm-sync
writes only the status conditions the KEP gives an implementation (Valid, Ready, Conflict) of
the local cluster's exports, never their metadata or spec.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Literal, Protocol

from ksm_sync.model import Kind, Meta, Ref

MIRRORED_LABEL = "mirrored-svc"
PREFIX_LABEL = "mirror-svc-prefix-sync"
REMOTE_NAMESPACE_ANNOTATION = "ksm-sync/remote-namespace"
REMOTE_NAME_ANNOTATION = "ksm-sync/remote-name"
# A slice names its Service, and the writer that manages it; the slice controllers leave
# alone the slices another writer manages.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "ksm-sync"
# A global service's slices say which cluster they came from; its Service, since when each
# cluster that could not be read has been so (see `merge`).
SOURCE_LABEL = "ksm-sync/source-cluster"
UNREACHABLE_ANNOTATION = "ksm-sync/unreachable-since"
# The cluster set: ksm-sync's MCS objects carry the local cluster's id; the KEP's labels say
# which Service of the set a slice belongs to, and which member it came from.
CLUSTER_SET_LABEL = "ksm-sync/cluster-set"
MCS_SERVICE_LABEL = "multicluster.kubernetes.io/service-name"
MCS_SOURCE_LABEL = "multicluster.kubernetes.io/source-cluster"
DERIVED_ANNOTATION = "multicluster.kubernetes.io/derived-service"
EXPORT_CONDITIONS = ("Valid", "Ready", "Conflict")  # the export conditions ksm-sync sets


class HasMeta(Protocol):
    @property
    def meta(self) -> Meta: ...


# What a name already taken on the local cluster turns out to be, when a write meets it.
Holder = Literal["ours", "theirs", "gone"]


def labels(prefix: str) -> dict[str, str]:
    return {MIRRORED_LABEL: "true", PREFIX_LABEL: prefix}


def selector(*prefixes: str, kind: Kind = "Service") -> str:
    """The label selector of these prefixes' mirrors of a kind: the only local objects a pass
    lists (with no prefix: the mirrors of every prefix)."""
    if len(prefixes) == 1:
        query = ",".join(f"{key}={value}" for key, value in labels(prefixes[0]).items())
    elif prefixes:
        query = f"{MIRRORED_LABEL}=true,{PREFIX_LABEL} in ({','.join(sorted(prefixes))})"
    else:
        query = f"{MIRRORED_LABEL}=true,{PREFIX_LABEL}"
    if kind == "EndpointSlice":
        query += f",{MANAGED_BY_LABEL}={MANAGED_BY}"
    return query


def annotations(remote: Ref) -> dict[str, str]:
    return {REMOTE_NAMESPACE_ANNOTATION: remote.namespace, REMOTE_NAME_ANNOTATION: remote.name}


def mirror_meta(name: str, namespace: str, prefix: str, remote: Ref) -> Meta:
    """The metadata every mirror object of this prefix carries."""
    return Meta(
        ref=Ref(namespace, name),
        labels=tuple(sorted(labels(prefix).items())),
        annotations=tuple(sorted(annotations(remote).items())),
    )


def slice_meta(name: str, namespace: str, prefix: str, remote: Ref, service: str) -> Meta:
    """The metadata of a mirror's EndpointSlice: the mirror's, plus what ties it to its Service."""
    slice_labels = {**labels(prefix), SERVICE_NAME_LABEL: service, MANAGED_BY_LABEL: MANAGED_BY}
    return Meta(
        ref=Ref(namespace, name),
        labels=tuple(sorted(slice_labels.items())),
        annotations=tuple(sorted(annotations(remote).items())),
    )


def clusterset_selector(cluster_id: str, kind: Kind) -> str:
    """The label selector of the cluster set's objects this cluster's ksm-sync wrote."""
    query = f"{CLUSTER_SET_LABEL}={cluster_id}"
    return f"{query},{MANAGED_BY_LABEL}={MANAGED_BY}" if kind == "EndpointSlice" else query


def clusterset_owned(meta: Meta, cluster_id: str, kind: Kind) -> bool:
    if kind == "EndpointSlice" and meta.label(MANAGED_BY_LABEL) != MANAGED_BY:
        return False
    return meta.label(CLUSTER_SET_LABEL) == cluster_id


def clusterset_meta(
    ref: Ref,
    cluster_id: str,
    labels: Iterable[tuple[str, str]] = (),
    annotations: Iterable[tuple[str, str]] = (),
) -> Meta:
    """The metadata of a cluster set object: its own labels and annotations, and ours."""
    return Meta(
        ref=ref,
        labels=tuple(sorted({**dict(labels), CLUSTER_SET_LABEL: cluster_id}.items())),
        annotations=tuple(sorted(dict(annotations).items())),
    )


def owned(meta: Meta, prefix: str, kind: Kind) -> bool:
    """Whether a local object is a mirror of this prefix.

    A slice must also name ksm-sync as its manager: the EndpointSliceMirroring controller
    copies every label of an Endpoints mirror, ours included, onto the slices it makes of it.
    """
    if kind == "EndpointSlice" and meta.label(MANAGED_BY_LABEL) != MANAGED_BY:
        return False
    return meta.label(MIRRORED_LABEL) == "true" and meta.label(PREFIX_LABEL) == prefix


def prefixes(mirrors: Iterable[HasMeta]) -> Counter[str]:
    """How many of these mirrors each prefix owns (by its label)."""
    return Counter(
        prefix
        for m in mirrors
        if m.meta.label(MIRRORED_LABEL) == "true" and (prefix := m.meta.label(PREFIX_LABEL))
    )


def remote_of(meta: Meta) -> Ref | None:
    """The remote a mirror stands for; None for mirrors kube-service-mirror made."""
    namespace = meta.annotation(REMOTE_NAMESPACE_ANNOTATION)
    name = meta.annotation(REMOTE_NAME_ANNOTATION)
    if namespace is None or name is None:
        return None
    return Ref(namespace, name)


def owner(meta: Meta) -> str:
    """Whose object ksm-sync means this to be: a prefix's mirror, or the cluster set's."""
    if (cluster_id := meta.label(CLUSTER_SET_LABEL)) is not None:
        return f"cluster set {cluster_id}"
    return f"prefix {meta.label(PREFIX_LABEL) or ''}"


def holder(found: Meta | None, ours: Meta, kind: Kind) -> Holder:
    """Who holds a name a write of `ours` collided with (a 409), read again just after it.

    "theirs" is a conflict: the object is reported and never touched. "ours" means
    another ksm-sync of the same owner got there first; "gone", that it vanished meanwhile.
    Both are races that the next pass settles from a fresh list.
    """
    if found is None:
        return "gone"
    if (cluster_id := ours.label(CLUSTER_SET_LABEL)) is not None:
        return "ours" if clusterset_owned(found, cluster_id, kind) else "theirs"
    return "ours" if owned(found, ours.label(PREFIX_LABEL) or "", kind) else "theirs"


def ownership_differs(desired: Meta, current: Meta) -> str | None:
    """Which of ksm-sync's own labels or annotations an owned object lacks, if any.

    Only these keys are compared: labels and annotations others add are left alone.
    """
    current_labels = dict(current.labels)
    if any(current_labels.get(k) != v for k, v in desired.labels):
        return "ownership labels"
    current_annotations = dict(current.annotations)
    if any(current_annotations.get(k) != v for k, v in desired.annotations):
        return "remote annotations"
    return None
