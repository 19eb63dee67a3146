"""One pass: observe -> mirror -> plan -> apply -> report. `once` and `loop` both call it.

Each step is a module of its own; this one runs them in order, and `run_pass` is the one
place where a pass ends: whatever stopped it becomes its report, which is logged there.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from loguru import logger

from ksm_sync import credentials
from ksm_sync.apply import NamespaceMissing, Outcome, apply, log_outcome
from ksm_sync.errors import Unavailable, UsageError
from ksm_sync.kube import (
    ApiError,
    Kube,
    NotSent,
    RequestObserver,
    RetryObserver,
    RetryPolicy,
)
from ksm_sync.mirror import desired_mirrors
from ksm_sync.model import Ref
from ksm_sync.observe import observe
from ksm_sync.plan import Plan, Policy, calculate
from ksm_sync.progress import Progress
from ksm_sync.report import Report, describe, describe_skip, planned, tally
from ksm_sync.settings import KubeconfigSource, Settings, Target, TokenSource


@dataclass
class PassState:
    """What a long-running `loop` remembers between passes (nothing else is remembered)."""

    seen_remotes: set[Ref] = field(default_factory=set)


@dataclass(frozen=True)
class Observers:
    """Who is told of every API request and retry: the metrics."""

    request: RequestObserver | None = None
    retry: RetryObserver | None = None


def policy_for(settings: Settings, state: PassState | None) -> Policy:
    if settings.policy == "upsert-only":
        return Policy(delete=False, max_delete_ratio=settings.max_delete_ratio)
    if settings.svc_sync:
        return Policy(max_delete_ratio=settings.max_delete_ratio)
    # --no-svc-sync: only mirrors whose remote this process saw, and no longer sees.
    seen = frozenset(state.seen_remotes) if state else frozenset()
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
            report = _steps(settings, settings.target, started, workdir, state, cancel, observers)
        except NotSent as error:
            if cancel is not None and cancel.is_set():
                report = Report(stopped=f"{error.reason} before the lists were complete")
            else:
                report = Report(error=_why(error, settings.target))
        except (ApiError, Unavailable, UsageError, NamespaceMissing) as error:
            report = Report(error=_why(error, settings.target))
        except Exception as error:  # a bug, or input nothing above foresaw: fail this pass only
            logger.opt(exception=error).error("unexpected error; this pass fails, the next runs")
            report = Report(error=f"unexpected {type(error).__name__}: {error}")
        report = replace(report, duration=time.monotonic() - started)
        log = logger.bind(**report.fields())
        if report.error is not None:
            log.error(report.summary())
        elif report.exit_code == 0 or report.stopped is not None:
            log.info(report.summary())
        else:
            log.warning(report.summary())
        return report


def _steps(
    settings: Settings,
    target: Target,
    started: float,
    workdir: Path,
    state: PassState | None,
    cancel: threading.Event | None,
    observers: Observers,
) -> Report:
    deadline = started + settings.pass_timeout
    remote, local = _connect(settings, deadline, workdir, observers, cancel)
    seen = observe(
        remote,
        local,
        label_selector=settings.label_selector,
        target=target,
        page_size=settings.page_size,
    )
    desired, skips = desired_mirrors(
        seen.remote_services, seen.remote_endpoints, target, seen.remote_slices
    )
    the_plan = calculate(
        desired,
        seen.local_services,
        seen.local_endpoints,
        prefix=target.prefix,
        policy=policy_for(settings, state),
        skipped=skips,
        slices=seen.local_slices,
    )
    if state is not None:
        state.seen_remotes |= {s.meta.ref for s in seen.remote_services}
    _log_plan(the_plan)
    if settings.dry_run:
        for change in the_plan.changes:
            print(describe(change), flush=True)
        return Report(
            counts=planned(the_plan), dry_run=True, guard=the_plan.guard, objects=seen.counts()
        )
    progress = Progress(len(the_plan.changes), on_outcome=log_outcome)
    try:
        outcomes = apply(
            the_plan.changes,
            local,
            target,
            concurrency=settings.concurrency,
            on_outcome=progress.record,
        )
    finally:
        progress.close()
    _log_abandoned(outcomes)
    return Report(counts=tally(the_plan, outcomes), guard=the_plan.guard, objects=seen.counts())


def _connect(
    settings: Settings,
    deadline: float,
    workdir: Path,
    observers: Observers,
    cancel: threading.Event | None,
) -> tuple[Kube, Kube]:
    """Clients of both sides, built afresh each pass: credentials rotate."""
    retry = RetryPolicy(read_timeout=settings.request_timeout)

    def client_of(side: str, source: KubeconfigSource | TokenSource) -> Kube:
        client = credentials.client(
            source, side=side, pool_size=settings.concurrency, workdir=workdir
        )
        return Kube(
            client,
            side,
            deadline=deadline,
            retry=retry,
            observer=observers.request,
            on_retry=observers.retry,
            stop=cancel,
        )

    return client_of("remote", settings.remote), client_of("local", settings.local)


def _log_plan(the_plan: Plan) -> None:
    """What the plan holds back: skipped remotes, and the guard's verdict."""
    for skip in the_plan.skipped:
        logger.bind(
            remote=str(skip.remote),
            object=f"Service/{skip.mirror_name}",
            change="skip",
            result="skipped",
            reason=skip.reason,
        ).warning(describe_skip(skip))
    if the_plan.guard:
        logger.bind(held=len(the_plan.held)).error("deletion guard: {}", the_plan.guard)


_RBAC = {"remote": "deploy/remote-rbac.yaml", "local": "cronjob.yaml"}


def _log_abandoned(outcomes: list[Outcome]) -> None:
    """One line per reason changes were not attempted, rather than one per change."""
    reasons = Counter(o.detail for o in outcomes if o.result == "abandoned")
    for reason, count in reasons.items():
        logger.bind(abandoned=count).warning(
            "{} changes not attempted ({}); the next pass makes them", count, reason
        )


def _why(error: Exception, target: Target) -> str:
    if isinstance(error, NamespaceMissing):
        return (
            f"mirror namespace {target.namespace!r} does not exist on the local cluster "
            "(create it, or set --mirror-ns)"
        )
    if isinstance(error, NotSent):
        return str(error)  # not a reachability or RBAC problem: no hint
    if isinstance(error, ApiError):
        if error.status == 403 and "endpointslices" in error.path:
            role = "remote ClusterRole" if error.side == "remote" else "local Role"
            return (
                f"{error} (the {role} must grant list on endpointslices in apiGroup "
                f"discovery.k8s.io, see {_RBAC[error.side]}; or run with --endpoints-api "
                "endpoints, which reads and writes Endpoints as kube-service-mirror did)"
            )
        if error.status in (401, 403):
            return f"{error} (check the {error.side} credentials and their RBAC)"
        if error.status == 0:
            return f"{error} (is the {error.side} cluster reachable?)"
    return str(error)
