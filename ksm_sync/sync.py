"""One pass: observe -> desired -> plan -> apply -> report. `once` and `loop` both call it."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from ksm_sync import credentials
from ksm_sync.apply import NamespaceMissing, apply, log_outcome
from ksm_sync.errors import Unavailable, UsageError
from ksm_sync.kube import ApiError, Kube, RequestObserver, RetryObserver, RetryPolicy
from ksm_sync.mirror import desired_mirrors
from ksm_sync.model import Ref
from ksm_sync.observe import Observed, observe
from ksm_sync.plan import Plan, Policy, plan
from ksm_sync.progress import Progress
from ksm_sync.report import Report, describe, describe_skip, planned, tally
from ksm_sync.settings import KubeconfigSource, Settings, TokenSource


@dataclass
class PassState:
    """What a long-running `loop` remembers between passes (nothing else is remembered)."""

    seen_remotes: set[Ref] = field(default_factory=set)


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
    observer: RequestObserver | None = None,
    on_retry: RetryObserver | None = None,
) -> tuple[Report, Plan | None]:
    """Runs one pass and logs it; never raises for a cluster's fault, only reports it."""
    with logger.contextualize(pass_id=uuid.uuid4().hex[:8]):
        return _run_pass(
            settings,
            workdir=workdir,
            state=state,
            cancel=cancel,
            observer=observer,
            on_retry=on_retry,
        )


def _run_pass(
    settings: Settings,
    *,
    workdir: Path,
    state: PassState | None,
    cancel: threading.Event | None,
    observer: RequestObserver | None,
    on_retry: RetryObserver | None = None,
) -> tuple[Report, Plan | None]:
    started = time.monotonic()
    deadline = started + settings.pass_timeout
    retry = RetryPolicy(read_timeout=settings.request_timeout)

    def kube(side: str, source: KubeconfigSource | TokenSource) -> Kube:
        client = credentials.client(source, pool_size=settings.concurrency, workdir=workdir)
        return Kube(
            client, side, deadline=deadline, retry=retry, observer=observer, on_retry=on_retry
        )

    try:
        remote = kube("remote", settings.remote)
        local = kube("local", settings.local)
        seen = observe(
            remote,
            local,
            label_selector=settings.label_selector,
            namespace=settings.mirror_namespace,
            prefix=settings.prefix,
            page_size=settings.page_size,
        )
    except (ApiError, Unavailable, UsageError) as error:
        report = Report(error=_why(error), duration=time.monotonic() - started)
        logger.bind(**report.fields()).error(report.summary())
        return report, None

    desired, skips = desired_mirrors(
        seen.remote_services,
        seen.remote_endpoints,
        prefix=settings.prefix,
        namespace=settings.mirror_namespace,
    )
    the_plan = plan(
        desired,
        seen.local_services,
        seen.local_endpoints,
        prefix=settings.prefix,
        policy=policy_for(settings, state),
        skipped=skips,
    )
    if state is not None:
        state.seen_remotes |= {s.meta.ref for s in seen.remote_services}
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

    if settings.dry_run:
        for change in the_plan.changes:
            print(describe(change), flush=True)
        report = Report(
            counts=planned(the_plan),
            duration=time.monotonic() - started,
            dry_run=True,
            guard=the_plan.guard,
            objects=_objects(seen),
        )
        logger.bind(**report.fields()).info(report.summary())
        return report, the_plan

    progress = Progress(len(the_plan.changes), on_outcome=log_outcome)
    try:
        outcomes = apply(
            the_plan.changes,
            local,
            namespace=settings.mirror_namespace,
            prefix=settings.prefix,
            concurrency=settings.concurrency,
            cancel=cancel,
            on_outcome=progress.record,
        )
    except NamespaceMissing:
        report = Report(
            error=f"mirror namespace {settings.mirror_namespace!r} does not exist on the local "
            "cluster (create it, or set --mirror-ns)",
            duration=time.monotonic() - started,
        )
        logger.bind(**report.fields()).error(report.summary())
        return report, the_plan
    finally:
        progress.close()
    report = Report(
        counts=tally(the_plan, outcomes),
        duration=time.monotonic() - started,
        guard=the_plan.guard,
        objects=_objects(seen),
    )
    log = logger.bind(**report.fields())
    (log.info if report.exit_code == 0 else log.warning)(report.summary())
    return report, the_plan


def _why(error: Exception) -> str:
    if isinstance(error, ApiError):
        if error.status in (401, 403):
            return f"{error} (check the {error.side} credentials and their RBAC)"
        if error.status == 0:
            return f"{error} (is the {error.side} cluster reachable?)"
    return str(error)


def _objects(seen: Observed) -> dict[str, int]:
    """How many objects each list held: the metrics' and the summary's view of the world."""
    return {
        "remote_services": len(seen.remote_services),
        "remote_endpoints": len(seen.remote_endpoints),
        "local_services": len(seen.local_services),
        "local_endpoints": len(seen.local_endpoints),
    }
