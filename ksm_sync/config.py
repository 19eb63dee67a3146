"""`--config FILE`: several remotes, and global services, in one YAML file.

Other tools write these files, so the keys are fixed (`mirrorNamespace`, `local`, `remotes`,
`global`, and per remote `name`, `prefix`, `labelSelector`, `kubeconfig`, ...). Everything in
the file is checked before anything is touched, and a bad value is named by its path in the
file (`remotes[1].prefix`), exit 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ksm_sync.duration import parse_duration
from ksm_sync.errors import UsageError
from ksm_sync.naming import prefix_problem
from ksm_sync.selector import selector_problem
from ksm_sync.settings import (
    ClusterSet,
    GlobalServices,
    KubeconfigSource,
    Remote,
    Retirement,
    TokenSource,
)

# A remote's name is a label value (the source label of global slices, metrics) and readable.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
RESERVED_NAMES = ("local", "global")  # the local cluster's, and the global services' plan

TOP = {"mirrorNamespace", "local", "remotes", "global", "policy", "maxDeleteRatio", "endpointsApi",
       "pruneRetired", "otherPrefixes", "clusterSet"}  # fmt: skip
LOCAL = {"kubeconfig", "context"}
REMOTE = {"name", "prefix", "labelSelector", "kubeconfig", "context", "apiURL", "tokenPath",
          "caURL", "insecureCAOverHTTP"}  # fmt: skip
GLOBAL = {"prefix", "labelSelector", "includeLocal", "unreachableAfter"}
CLUSTER_SET = {"clusterID", "unreachableAfter"}


@dataclass(frozen=True)
class Config:
    """What the file says; None where it says nothing (the options' values apply)."""

    remotes: tuple[Remote, ...]
    mirror_namespace: str | None = None
    local: KubeconfigSource | None = None
    global_services: GlobalServices | None = None
    policy: str | None = None
    max_delete_ratio: float | None = None
    endpoints_api: str | None = None
    retirement: Retirement = field(default_factory=Retirement)
    cluster_set: ClusterSet | None = None


def load(path: str) -> Config:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--config {path}: cannot read it ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f"--config {path}: not YAML ({error})") from None
    return _Reader(path).config(data)


class _Reader:
    """Reads the file's data, naming the path of whatever is wrong."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, why: str) -> UsageError:
        return UsageError(f"--config {self.path}: {where}: {why}")

    def mapping(self, value: Any, where: str, keys: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        for key in value:
            if key not in keys:
                raise self.fail(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(keys))})")
        return value

    def text(self, value: Any, where: str, *, required: bool = False) -> str | None:
        if value is None or value == "":
            if required:
                raise self.fail(where, "is required")
            return None
        if not isinstance(value, str):
            raise self.fail(where, f"must be text, not {type(value).__name__}")
        return value

    def flag(self, value: Any, where: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def config(self, data: Any) -> Config:
        top = self.mapping(data, "(top)", TOP)
        cluster_set = self.cluster_set(top.get("clusterSet"))
        remotes = top.get("remotes")
        if not isinstance(remotes, list) or not remotes:
            raise self.fail("remotes", "must be a list of at least one remote")
        read = tuple(
            self.remote(r, f"remotes[{i}]", member=cluster_set is not None)
            for i, r in enumerate(remotes)
        )
        self.unique(read)
        if cluster_set is not None:
            for i, remote in enumerate(read):
                if remote.name == cluster_set.cluster_id:
                    raise self.fail(f"remotes[{i}].name", f"{remote.name!r} is clusterSet."
                                    "clusterID, the local cluster's: a member's name is its "
                                    "cluster id")  # fmt: skip
        local = None
        if "local" in top:
            entry = self.mapping(top["local"] or {}, "local", LOCAL)
            path = self.text(entry.get("kubeconfig"), "local.kubeconfig")
            context = self.text(entry.get("context"), "local.context")
            local = KubeconfigSource(path, context) if path or context else None
        global_services = self.global_services(top.get("global"), read)
        policy = self.text(top.get("policy"), "policy")
        if policy not in (None, "sync", "upsert-only"):
            raise self.fail("policy", "must be sync or upsert-only")
        ratio = top.get("maxDeleteRatio")
        if ratio is not None and (
            isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1
        ):
            raise self.fail("maxDeleteRatio", "must be a number from 0 to 1")
        api = self.text(top.get("endpointsApi"), "endpointsApi")
        if api not in (None, "endpointslices", "endpoints"):
            raise self.fail("endpointsApi", "must be endpointslices or endpoints")
        if global_services is not None and api == "endpoints":
            raise self.fail("global", "global services are merged from EndpointSlices: "
                            "endpointsApi must be endpointslices")  # fmt: skip
        others = top.get("otherPrefixes") or []
        if not isinstance(others, list):
            raise self.fail("otherPrefixes", "must be a list of prefixes")
        other_prefixes = tuple(self.prefix(p, f"otherPrefixes[{i}]") for i, p in enumerate(others))
        ours = {r.prefix for r in read if r.prefix} | (
            {global_services.prefix} if global_services else set()
        )
        for i, prefix in enumerate(other_prefixes):
            if prefix in ours:
                raise self.fail(f"otherPrefixes[{i}]", f"{prefix!r} is this file's own prefix")
        retirement = Retirement(
            prune=self.flag(top.get("pruneRetired"), "pruneRetired"), other_prefixes=other_prefixes
        )
        return Config(
            remotes=read,
            mirror_namespace=self.text(top.get("mirrorNamespace"), "mirrorNamespace"),
            local=local,
            global_services=global_services,
            policy=policy,
            max_delete_ratio=None if ratio is None else float(ratio),
            endpoints_api=api,
            retirement=retirement,
            cluster_set=cluster_set,
        )

    def remote(self, value: Any, where: str, *, member: bool) -> Remote:
        """A remote; with a cluster set, one without prefix and labelSelector is a member only."""
        entry = self.mapping(value, where, REMOTE)
        name = self.text(entry.get("name"), f"{where}.name", required=True)
        assert name is not None
        if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise self.fail(f"{where}.name", f"{name!r} must be lower-case letters, digits and "
                            f"'-' (at most 63), and not {' or '.join(RESERVED_NAMES)}")  # fmt: skip
        credentials = self.credentials(entry, where)
        if member and entry.get("prefix") is None and entry.get("labelSelector") is None:
            return Remote(name, None, None, credentials)
        prefix = self.prefix(entry.get("prefix"), f"{where}.prefix")
        selector = self.selector(entry.get("labelSelector"), f"{where}.labelSelector")
        return Remote(name, prefix, selector, credentials)

    def prefix(self, value: Any, where: str) -> str:
        prefix = self.text(value, where, required=True)
        assert prefix is not None
        if problem := prefix_problem(prefix):
            raise self.fail(where, f"{prefix!r} is invalid: {problem}")
        return prefix

    def selector(self, value: Any, where: str) -> str:
        selector = self.text(value, where, required=True)
        assert selector is not None
        if problem := selector_problem(selector):
            raise self.fail(where, f"{selector!r} is invalid: {problem}")
        return selector

    def credentials(self, entry: dict[str, Any], where: str) -> KubeconfigSource | TokenSource:
        kubeconfig = self.text(entry.get("kubeconfig"), f"{where}.kubeconfig")
        api_url = self.text(entry.get("apiURL"), f"{where}.apiURL")
        if bool(kubeconfig) == bool(api_url):
            raise self.fail(where, "give either kubeconfig (and context) or apiURL, tokenPath "
                            "and caURL")  # fmt: skip
        if kubeconfig:
            for key in ("tokenPath", "caURL", "insecureCAOverHTTP"):
                if key in entry:
                    raise self.fail(f"{where}.{key}", "belongs with apiURL, not kubeconfig")
            return KubeconfigSource(kubeconfig, self.text(entry.get("context"), f"{where}.context"))
        if "context" in entry:
            raise self.fail(f"{where}.context", "belongs with kubeconfig, not apiURL")
        assert api_url is not None
        return TokenSource(
            api_url=api_url,
            ca_url=self.text(entry.get("caURL"), f"{where}.caURL", required=True) or "",
            token_path=self.text(entry.get("tokenPath"), f"{where}.tokenPath", required=True),
            insecure_ca_over_http=self.flag(
                entry.get("insecureCAOverHTTP"), f"{where}.insecureCAOverHTTP"
            ),
        )

    def unique(self, remotes: tuple[Remote, ...]) -> None:
        for key, values in (("name", [r.name for r in remotes]),
                            ("prefix", [r.prefix for r in remotes])):  # fmt: skip
            for i, value in enumerate(values):
                if value is not None and value in values[:i]:
                    raise self.fail(f"remotes[{i}].{key}", f"{value!r} is already another remote's")

    def cluster_set(self, value: Any) -> ClusterSet | None:
        if value is None:
            return None
        entry = self.mapping(value, "clusterSet", CLUSTER_SET)
        cluster_id = self.text(entry.get("clusterID"), "clusterSet.clusterID", required=True)
        assert cluster_id is not None
        if not _NAME.fullmatch(cluster_id):
            raise self.fail("clusterSet.clusterID", f"{cluster_id!r} must be a DNS label: "
                            "lower-case letters, digits and '-', at most 63")  # fmt: skip
        return ClusterSet(cluster_id, self.duration(entry, "clusterSet.unreachableAfter"))

    def duration(self, entry: dict[str, Any], where: str) -> float:
        text = self.text(entry.get(where.rsplit(".", 1)[1]), where) or "5m"
        try:
            return parse_duration(text)
        except ValueError as error:
            raise self.fail(where, str(error)) from None

    def global_services(self, value: Any, remotes: tuple[Remote, ...]) -> GlobalServices | None:
        if value is None:
            return None
        entry = self.mapping(value, "global", GLOBAL)
        prefix = self.prefix(entry.get("prefix"), "global.prefix")
        if prefix in (r.prefix for r in remotes):
            raise self.fail("global.prefix", f"{prefix!r} is a remote's prefix: it must be its own")
        for remote in remotes:  # `g` and `g-a` name one mirror: `g`'s a-web and `g-a`'s web
            if remote.prefix is None:
                continue
            longer, shorter = sorted((remote.prefix, prefix), key=len, reverse=True)
            if longer.startswith(f"{shorter}-"):
                raise self.fail("global.prefix", f"{prefix!r} and the prefix {remote.prefix!r} "
                                f"of remote {remote.name} can give two Services one mirror name "
                                "(one starts with the other and '-')")  # fmt: skip
        unreachable_after = self.duration(entry, "global.unreachableAfter")
        return GlobalServices(
            prefix=prefix,
            label_selector=self.selector(entry.get("labelSelector"), "global.labelSelector"),
            include_local=self.flag(entry.get("includeLocal"), "global.includeLocal"),
            unreachable_after=unreachable_after,
        )
