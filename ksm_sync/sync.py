"""One pass: observe -> mirror/merge -> plan -> apply -> report. `once` and `loop` both call it.

Each step is a module of its own; this one runs them in order, and `run_pass` is the one
place where a pass ends: whatever stopped it becomes its report, which is logged there.

With several remotes, the local mirror namespace is listed once and the remotes at the same
time; each remote is planned on its own prefix, the global services across all of them, the
cluster set's imports across its members, and every change is applied in one go. A remote
that cannot be read leaves its mirrors (and keeps its contribution to global services and
imports for their time) while the others are mirrored.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from loguru import logger

from ksm_sync import credentials, ownership
from ksm_sync.apply import NamespaceMissing, Outcome, apply, log_outcome
from ksm_sync.clusterset import Member, merge_imports
from ksm_sync.errors import Unavailable, UsageError
from ksm_sync.kube import (
    ApiError,
    Kube,
    NotSent,
    RequestObserver,
    RetryObserver,
    RetryPolicy,
)
from ksm_sync.merge import LOCAL_CLUSTER, Source, desired_global
from ksm_sync.mirror import Mirror, Skip, desired_mirrors
from ksm_sync.model import Ref
from ksm_sync.observe import (
    Exported,
    Imported,
    Objects,
    collector_paused,
    observe_exports,
    observe_imports,
    observe_local,
    observe_remote,
)
from ksm_sync.plan import Plan, Policy, calculate, calculate_imports
from ksm_sync.progress import Progress
from ksm_sync.report import Report, describe, describe_skip, planned, tally
from ksm_sync.settings import KubeconfigSource, Remote, Settings, Target, TokenSource

GLOBAL = "global"  # how the global services' plan is named in reports and metrics
CLUSTER_SET = "clusterset"  # and the cluster set's
RETIRED = "retired"  # and, with its prefix, the plan pruning a retired prefix's mirrors


@dataclass
class PassState:
    """What a long-running `loop` remembers between passes (nothing else is remembered):
    the remote Services each prefix has seen, for --no-svc-sync."""

    seen_remotes: dict[str, set[Ref]] = field(default_factory=dict)


@dataclass(frozen=True)
class Observers:
    """Who is told of every API request and retry: the metrics."""

    request: RequestObserver | None = None
    retry: RetryObserver | None = None


@dataclass(frozen=True)
class _Seen:
    """One remote, read: its own selected objects, its global ones, its exports; or why not."""

    own: Objects | None = None
    shared: Objects | None = None
    exported: Exported | None = None
    error: str | None = None


def policy_for(settings: Settings, prefix: str, state: PassState | None) -> Policy:
    if settings.policy == "upsert-only":
        return Policy(delete=False, max_delete_ratio=settings.max_delete_ratio)
    if settings.svc_sync:
        return Policy(max_delete_ratio=settings.max_delete_ratio)
    # --no-svc-sync: only mirrors whose remote this process saw, and no longer sees.
    seen = frozenset(state.seen_remotes.get(prefix, ())) if state else frozenset()
    return Policy(deletable_remotes=seen, max_delete_ratio=settings.max_delete_ratio)


def run_pass(
    settings: Settings,
    *,
    workdir: Path,
    state: PassState | None = None,
    cancel: threading.Event | None = None,
    observers: Observers = Observers(),
) -> Report:
    """Runs one pass and logs its report; never raises for a cluster's fault, only reports it."""
    started = time.monotonic()
    with logger.contextualize(pass_id=uuid.uuid4().hex[:8]):
        try:
            report = _steps(settings, started, workdir, state, cancel, observers)
        except _NoRemote as error:
            report = Report(error=str(error), remote_errors=error.errors)
        except NotSent as error:
            if cancel is not None and cancel.is_set():
                report = Report(stopped=f"{error.reason} before the lists were complete")
            else:
                report = Report(error=_why(error, settings.mirror_namespace))
        except (ApiError, Unavailable, UsageError, NamespaceMissing) as error:
            report = Report(error=_why(error, settings.mirror_namespace))
        except Exception as error:  # a bug, or input nothing above foresaw: fail this pass only
            logger.opt(exception=error).error("unexpected error; this pass fails, the next runs")
            report = Report(error=f"unexpected {type(error).__name__}: {error}")
        report = replace(report, duration=time.monotonic() - started)
        log = logger.bind(**report.fields())
        if report.result == "error":
            log.error(report.summary())
        elif report.exit_code == 0 or report.stopped is not None:
            log.info(report.summary())
        else:
            log.warning(report.summary())
        return report


def _steps(
    settings: Settings,
    started: float,
    workdir: Path,
    state: PassState | None,
    cancel: threading.Event | None,
    observers: Observers,
) -> Report:
    def kube(side: str, name: str, source: KubeconfigSource | TokenSource) -> Kube:
        return _client(settings, side, name, source, started, workdir, observers, cancel)

    local = kube("local", "local", settings.local)
    # Looking for retired prefixes means listing the mirrors of every prefix.
    listed = () if settings.retirement is not None else settings.prefixes
    with collector_paused():
        mirrors = Objects()
        if settings.prefixes:
            mirrors = observe_local(local, settings.mirror_namespace, listed, settings.page_size)
        seen = _observe_remotes(settings, lambda r: kube("remote", r.name, r.credentials))
        local_shared = _observe_local_globals(settings, local)
        local_set = _observe_local_set(settings, local)
    errors = {name: s.error for name, s in seen.items() if s.error is not None}
    if len(errors) == len(settings.remotes) and local_set is None:
        raise _NoRemote(errors)

    plans: dict[str, Plan] = {}
    objects = Counter(mirrors.of_prefix(*settings.prefixes).counts("local"))
    for remote in settings.mirrored:
        own = seen[remote.name].own
        if own is None:
            continue
        plans[remote.name] = _plan(settings, remote, own, mirrors, state)
        objects.update(own.counts("remote"))  # all remotes together
    if settings.global_services is not None:
        plans[GLOBAL] = _plan_global(settings, seen, local_shared, mirrors, state, time.time())
    if local_set is not None:
        plans[CLUSTER_SET] = _plan_set(settings, seen, local_set, state, time.time())
        objects.update(_set_counts(seen, local_set))
    retired = _retired(settings, mirrors)
    if settings.retirement is not None and settings.retirement.prune:
        for prefix in retired:
            plans[f"{RETIRED}:{prefix}"] = _calculate(
                settings, settings.target(prefix), {}, [], mirrors, state, ""
            )

    guards = "; ".join(
        f"{name}: {p.guard}" if len(plans) > 1 else p.guard for name, p in plans.items() if p.guard
    )
    changes = [c for p in plans.values() for c in p.changes]
    if settings.dry_run:
        for change in changes:
            print(describe(change), flush=True)
        by_remote = {name: planned(p) for name, p in plans.items()}
        return _report(
            by_remote, errors, guards or None, dict(objects), retired, _read(seen), dry_run=True
        )
    progress = Progress(len(changes), on_outcome=log_outcome)
    try:
        outcomes = apply(
            changes,
            local,
            settings.mirror_namespace,
            concurrency=settings.concurrency,
            on_outcome=progress.record,
            mcs_version=local_set[0].version if local_set else "",
        )
    finally:
        progress.close()
    _log_abandoned(outcomes)
    by_remote = {name: tally(p, outcomes) for name, p in plans.items()}
    return _report(by_remote, errors, guards or None, dict(objects), retired, _read(seen))


def _read(seen: dict[str, _Seen]) -> tuple[str, ...]:
    return tuple(name for name, s in seen.items() if s.error is None)


def _observe_local_set(settings: Settings, local: Kube) -> tuple[Exported, Imported] | None:
    """The local member's exports, and what this cluster's ksm-sync wrote for the set."""
    wanted = settings.cluster_set
    if wanted is None:
        return None
    exported = observe_exports(local, settings.page_size)
    imported = observe_imports(local, wanted.cluster_id, exported.version, settings.page_size)
    return exported, imported


def _plan_set(
    settings: Settings,
    seen: dict[str, _Seen],
    local_set: tuple[Exported, Imported],
    state: PassState | None,
    now: float,
) -> Plan:
    """The cluster set's plan: every member's exports merged into this cluster's imports."""
    wanted = settings.cluster_set
    assert wanted is not None
    exported, imported = local_set
    members = [Member(wanted.cluster_id, exported)]
    members += [Member(r.name, seen[r.name].exported) for r in settings.remotes]
    merged = merge_imports(
        members, wanted.cluster_id, imported, now=now, unreachable_after=wanted.unreachable_after
    )
    plan = calculate_imports(
        merged.imports,
        imported,
        merged.statuses,
        exported.exports,
        cluster_id=wanted.cluster_id,
        policy=policy_for(settings, CLUSTER_SET, state),
        untouchable=merged.absent,
    )
    if state is not None:
        state.seen_remotes.setdefault(CLUSTER_SET, set()).update(merged.imports)
    _log_plan(plan, settings)
    return plan


def _set_counts(seen: dict[str, _Seen], local_set: tuple[Exported, Imported]) -> dict[str, int]:
    """What the cluster set's lists held: every member's exports, this cluster's imports."""
    exported, imported = local_set
    remote = sum(len(s.exported.exports) for s in seen.values() if s.exported is not None)
    return {
        "local_serviceexports": len(exported.exports),
        "remote_serviceexports": remote,
        "local_serviceimports": len(imported.imports),
    }


def _retired(settings: Settings, mirrors: Objects) -> dict[str, int]:
    """Mirrors by prefix that the configuration no longer has, each named in a warning."""
    if settings.retirement is None:
        return {}
    kept = {*settings.prefixes, *settings.retirement.other_prefixes}
    retired = {p: n for p, n in ownership.prefixes(mirrors.services).items() if p not in kept}
    for prefix, count in sorted(retired.items()):
        logger.bind(retired_prefix=prefix, mirrors=count).warning(
            "retired prefix {!r}: {} mirrors in {} that no remote of the config has{}",
            prefix,
            count,
            settings.mirror_namespace,
            " (pruneRetired: deleting them)"
            if settings.retirement.prune
            else "; pruneRetired: true deletes them, otherPrefixes leaves another ksm-sync's alone",
        )
    return retired


class _NoRemote(Exception):
    """No remote could be read: the pass could not run, and nothing is changed."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _observe_remotes(settings: Settings, kube_of: Callable[[Remote], Kube]) -> dict[str, _Seen]:
    """Every remote, read at the same time; a remote's failure is its own, named."""

    def read(remote: Remote) -> _Seen:
        kube = None
        try:
            kube = kube_of(remote)
            own = shared = exported = None
            if remote.label_selector is not None:
                own = observe_remote(
                    kube, remote.label_selector, settings.endpoints_api, settings.page_size
                )
            if settings.global_services is not None:
                selector = settings.global_services.label_selector
                shared = observe_remote(kube, selector, "endpointslices", settings.page_size)
            if settings.cluster_set is not None:
                exported = observe_exports(kube, settings.page_size)
            return _Seen(own, shared, exported)
        except NotSent as error:
            if kube is not None and kube.stop.is_set():
                raise  # stopping: the whole pass stops
            return _Seen(error=_why(error, settings.mirror_namespace))
        except (ApiError, Unavailable, UsageError) as error:
            return _Seen(error=_why(error, settings.mirror_namespace))

    if len(settings.remotes) == 1:
        [remote] = settings.remotes
        return {remote.name: read(remote)}
    return _at_once({r.name: functools.partial(read, r) for r in settings.remotes})


def _at_once(calls: dict[str, Callable[[], _Seen]]) -> dict[str, _Seen]:
    """Each call in a daemon thread of its own; their results, or the first call's error.

    Not a pool: a second SIGTERM exits from the main thread at once, and the interpreter
    waits at exit for a pool's threads, each until its read timed out (30 s by default).
    """
    context = contextvars.copy_context()  # log fields such as the pass id, in every thread
    results: dict[str, _Seen] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, call: Callable[[], _Seen]) -> None:
        try:
            results[name] = context.copy().run(call)
        except BaseException as error:  # raised again in the main thread
            errors[name] = error

    threads = [
        threading.Thread(target=run, args=item, name=f"observe-{item[0]}", daemon=True)
        for item in calls.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in calls:
        if name in errors:
            raise errors[name]
    return {name: results[name] for name in calls}


def _observe_local_globals(settings: Settings, local: Kube) -> Objects | None:
    """The local cluster's own globally labelled Services and slices, when asked for."""
    wanted = settings.global_services
    if wanted is None or not wanted.include_local:
        return None
    return observe_remote(local, wanted.label_selector, "endpointslices", settings.page_size)


def _plan(
    settings: Settings, remote: Remote, own: Objects, mirrors: Objects, state: PassState | None
) -> Plan:
    target = settings.target(remote.prefix)
    desired, skips = desired_mirrors(own.services, own.endpoints, target, own.slices)
    return _calculate(settings, target, desired, skips, mirrors, state, remote.label_selector)


def _plan_global(
    settings: Settings,
    seen: dict[str, _Seen],
    local_shared: Objects | None,
    mirrors: Objects,
    state: PassState | None,
    now: float,
) -> Plan:
    wanted = settings.global_services
    assert wanted is not None
    target = settings.target(wanted.prefix)
    sources = [Source(r.name, seen[r.name].shared) for r in settings.remotes]
    if local_shared is not None:
        sources.append(Source(LOCAL_CLUSTER, local_shared))
    desired, skips, warnings = desired_global(
        sources,
        mirrors.of_prefix(wanted.prefix),
        target,
        now=now,
        unreachable_after=wanted.unreachable_after,
    )
    for warning in warnings:
        logger.warning(warning)
    return _calculate(settings, target, desired, skips, mirrors, state, wanted.label_selector)


def _calculate(
    settings: Settings,
    target: Target,
    desired: dict[str, Mirror],
    skips: list[Skip],
    mirrors: Objects,
    state: PassState | None,
    selector: str,
) -> Plan:
    """The plan of one prefix (the planner keeps only the mirrors that prefix owns), logged;
    `loop` remembers the remotes it saw, for --no-svc-sync."""
    plan = calculate(
        desired,
        mirrors.services,
        mirrors.endpoints,
        prefix=target.prefix,
        policy=policy_for(settings, target.prefix, state),
        skipped=skips,
        slices=mirrors.slices,
    )
    if state is not None:
        seen = state.seen_remotes.setdefault(target.prefix, set())
        seen.update(m.remote for m in desired.values())
        seen.update(s.remote for s in skips)
    kind = "Endpoints" if target.endpoints_api == "endpoints" else "EndpointSlices"
    _log_plan(plan, settings, selector, kind)
    return plan


def _report(
    by_remote: dict[str, dict[str, int]],
    errors: dict[str, str],
    guard: str | None,
    objects: dict[str, int],
    retired: dict[str, int],
    read: tuple[str, ...],
    *,
    dry_run: bool = False,
) -> Report:
    total: Counter[str] = Counter()
    for counts in by_remote.values():
        total.update(counts)
    return Report(
        counts=dict(total),
        guard=guard,
        dry_run=dry_run,
        objects=objects,
        by_remote=by_remote,
        remote_errors=errors,
        retired=retired,
        read=read,
    )


def _client(
    settings: Settings,
    side: str,
    name: str,
    source: KubeconfigSource | TokenSource,
    started: float,
    workdir: Path,
    observers: Observers,
    cancel: threading.Event | None,
) -> Kube:
    """A side's client, built afresh each pass: credentials rotate. Each writes its files (a
    CA, a kubeconfig's keys) in a directory of its own."""
    own = workdir / name
    own.mkdir(exist_ok=True)
    client = credentials.client(source, side=side, pool_size=settings.concurrency, workdir=own)
    # A remote has half of the pass to answer its lists: one that hangs must not leave the
    # other remotes' writes no time.
    share = 0.5 if side == "remote" else 1.0
    return Kube(
        client,
        side,
        cluster=name,
        deadline=started + settings.pass_timeout * share,
        retry=RetryPolicy(read_timeout=settings.request_timeout),
        observer=observers.request,
        on_retry=observers.retry,
        stop=cancel,
    )


def _log_plan(
    the_plan: Plan, settings: Settings, selector: str = "", kind: str = "EndpointSlices"
) -> None:
    """What the plan holds back or cannot do: skipped remotes, conflicts, mirrors that will
    answer nothing, Services of the cluster set without a namespace here, and deletes held
    by the policy or the guard."""
    for skip, result in [(s, "skipped") for s in the_plan.skipped] + [
        (c, "conflict") for c in the_plan.conflicts
    ]:
        logger.bind(
            remote=str(skip.remote),
            object=f"Service/{skip.mirror_name}",
            change="skip",
            result=result,
            reason=skip.reason,
        ).warning(describe_skip(skip))
    for mirror in the_plan.empty:
        logger.bind(remote=str(mirror.remote), object=f"Service/{mirror.name}").warning(
            "remote Service {} has no {} that the label selector {!r} matches: its mirror answers "
            "no address (label its {} as the Service is labelled)",
            mirror.remote,
            kind,
            selector,
            kind,
        )
    if the_plan.absent:
        logger.bind(absent=len(the_plan.absent)).info(
            "{} Services of the cluster set not imported: this cluster has no namespace {} "
            "(it is never created; a namespace being deleted is left to its deletion)",
            len(the_plan.absent),
            ", ".join(sorted({r.namespace for r in the_plan.absent})),
        )
    if the_plan.guard:
        logger.bind(held=len(the_plan.held)).error("deletion guard: {}", the_plan.guard)
    elif the_plan.held:
        why = (
            "--policy upsert-only deletes nothing"
            if settings.policy == "upsert-only"
            else "--no-svc-sync deletes only mirrors whose remote this process saw go"
        )
        names = sorted({c.object_name for c in the_plan.held})
        logger.bind(held=len(names)).info(
            "{} deletes held back ({}): {}{}",
            len(names),
            why,
            ", ".join(names[:5]),
            f" and {len(names) - 5} more" if len(names) > 5 else "",
        )


def _log_abandoned(outcomes: list[Outcome]) -> None:
    """One line per reason changes were not attempted, rather than one per change."""
    reasons = Counter(o.detail for o in outcomes if o.result == "abandoned")
    for reason, count in reasons.items():
        logger.bind(abandoned=count).warning(
            "{} changes not attempted ({}); the next pass makes them", count, reason
        )


_RBAC = {"remote": "deploy/remote/remote-rbac.yaml", "local": "cronjob.yaml"}  # each side's grants


def _why(error: Exception, namespace: str) -> str:
    if isinstance(error, NamespaceMissing):
        return (
            f"mirror namespace {namespace!r} does not exist on the local cluster "
            "(create it, or set --mirror-ns)"
        )
    if isinstance(error, NotSent):
        return str(error)  # not a reachability or RBAC problem: no hint
    if isinstance(error, ApiError):
        side = error.side.split()[0]  # "remote east" is a remote
        if error.status == 403 and "endpointslices" in error.path:
            role = "remote ClusterRole" if side == "remote" else "local Role"
            return (
                f"{error} (the {role} must grant list on endpointslices in apiGroup "
                f"discovery.k8s.io, see {_RBAC[side]}; or run with --endpoints-api "
                "endpoints, which reads and writes Endpoints as kube-service-mirror did)"
            )
        if error.status in (401, 403):
            return f"{error} (check the {error.side} credentials and their RBAC)"
        if error.status == 0:
            return f"{error} (is the {error.side} cluster reachable?)"
    return str(error)
