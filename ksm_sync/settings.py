"""Validated settings of a run, built once by the CLI; everything after it trusts them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EndpointsApi = Literal["endpointslices", "endpoints"]


@dataclass(frozen=True)
class KubeconfigSource:
    """Credentials from a kubeconfig file (or files, KUBECONFIG-style) and a context."""

    path: str | None  # None: in-cluster service account
    context: str | None = None


@dataclass(frozen=True)
class TokenSource:
    """kube-service-mirror's remote credentials: API URL, bearer token, CA from a URL."""

    api_url: str
    ca_url: str
    token_path: str | None = None
    token_value: str | None = field(default=None, repr=False)  # never printed
    insecure_ca_over_http: bool = False  # the user accepted a CA fetched over plain http


@dataclass(frozen=True)
class Target:
    """Where one remote's mirrors go: the value each step of a pass is given.

    Steps take this rather than Settings, so that they need not know where settings
    come from, and one pass can plan several remotes.
    """

    prefix: str
    namespace: str  # the local mirror namespace
    endpoints_api: EndpointsApi = "endpointslices"  # what is read remotely and written locally


@dataclass(frozen=True)
class Remote:
    """One remote cluster: how to reach it, what of it is mirrored, under which prefix.

    With a cluster set, a remote without prefix and selector is a member only: its exports
    are read, nothing of it is mirrored.
    """

    name: str  # in logs, metrics, the slices of global services; a member's cluster id
    prefix: str | None
    label_selector: str | None
    credentials: KubeconfigSource | TokenSource

    @property
    def mirrored(self) -> bool:
        return self.prefix is not None


@dataclass(frozen=True)
class GlobalServices:
    """Remote Services with this label merged, by namespace and name, across the remotes."""

    prefix: str
    label_selector: str
    include_local: bool = False  # the local cluster's own endpoints too
    unreachable_after: float = 300.0  # seconds before an unreachable remote's slices go


@dataclass(frozen=True)
class ClusterSet:
    """The Multi-Cluster Services API: the local cluster (this id) and every remote are members;
    their ServiceExports become ServiceImports here."""

    cluster_id: str
    unreachable_after: float = 300.0  # seconds an unreachable member keeps its contribution


@dataclass(frozen=True)
class Retirement:
    """With --config: mirrors in the mirror namespace of prefixes the file does not have
    (a remote dropped from it) are reported every pass, and pruned if asked; those of
    other_prefixes (another ksm-sync's) are left out of it."""

    prune: bool = False
    other_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    mirror_namespace: str
    local: KubeconfigSource
    remotes: tuple[Remote, ...]
    global_services: GlobalServices | None = None
    svc_sync: bool = True
    policy: Literal["sync", "upsert-only"] = "sync"
    max_delete_ratio: float = 0.5
    dry_run: bool = False
    concurrency: int = 16
    pass_timeout: float = 300.0
    request_timeout: float = 30.0  # read timeout of one request; a stalled answer is retried
    page_size: int = 500
    endpoints_api: EndpointsApi = "endpointslices"
    retirement: Retirement | None = None  # None: not looked for (the options' one remote)
    cluster_set: ClusterSet | None = None

    def target(self, prefix: str) -> Target:
        return Target(prefix, self.mirror_namespace, self.endpoints_api)

    @property
    def mirrored(self) -> tuple[Remote, ...]:
        """The remotes whose Services are mirrored (all but the cluster set's members only)."""
        return tuple(r for r in self.remotes if r.mirrored)

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Every prefix this run owns mirrors of: the remotes', and the global services'."""
        own = tuple(r.prefix for r in self.mirrored if r.prefix)
        return own + ((self.global_services.prefix,) if self.global_services else ())
