"""Report: what a pass did (or would do), counted per mirror, and what that means.

The one vocabulary of pass results: `success` (exit 0: all mirrored), `partial` (exit 1:
something skipped, in conflict, failed or held by the guard), `error` (exit 3: the pass
could not run). Logs, metrics, /readyz and the exit status all read it from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ksm_sync.apply import Outcome
from ksm_sync.mirror import Skip
from ksm_sync.model import EndpointSlice, Service, ServiceExport, ServiceImport
from ksm_sync.plan import ORPHAN, ORPHAN_IMPORT, PAST, Change, Object, Plan

PassResult = Literal["success", "partial", "error"]
RESULTS: tuple[PassResult, ...] = ("success", "partial", "error")
EXIT_CODES: dict[PassResult, int] = {"success": 0, "partial": 1, "error": 3}

FIELDS = ("created", "updated", "recreated", "deleted", "unchanged", "conflicts", "skipped",
          "failed", "held")  # fmt: skip
# Counts the summary line shows only when they happen: a race that the next pass settles,
# changes a stopped pass (SIGTERM, --pass-timeout) did not attempt, mirrors that answer no
# address because no endpoint object of their remote matched the selector, Services of the
# cluster set not imported because this cluster does not have their namespace.
OCCASIONAL = ("raced", "abandoned", "empty", "absent")
TROUBLE = ("conflicts", "skipped", "failed", "abandoned")  # any of these: exit status 1


def wrote_all(counts: Mapping[str, int]) -> bool:
    """Every planned write was made: none failed, none was left unattempted."""
    return not counts.get("failed", 0) and not counts.get("abandoned", 0)


@dataclass(frozen=True)
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    error: str | None = None  # the pass could not run
    stopped: str | None = None  # a signal stopped the pass before its lists were complete
    guard: str | None = None  # the mass-deletion guard held deletes back
    dry_run: bool = False
    objects: dict[str, int] = field(default_factory=dict)  # observed: remote_services, ...
    # With several remotes: the counts of each (and of the global services), and the remotes
    # that could not be read, why. Their mirrors were left as they are.
    by_remote: dict[str, dict[str, int]] = field(default_factory=dict)
    remote_errors: dict[str, str] = field(default_factory=dict)
    # With --config: mirrors by prefix that the configuration no longer has.
    retired: dict[str, int] = field(default_factory=dict)
    read: tuple[str, ...] = ()  # the remotes (members of a cluster set too) read whole

    @property
    def result(self) -> PassResult:
        if self.error is not None or self.remote_errors:
            return "error"
        trouble = sum(self.counts.get(k, 0) for k in TROUBLE)
        return "partial" if trouble or self.guard or self.stopped else "success"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.result]

    @property
    def succeeded(self) -> bool:
        """The pass ran and wrote all it planned: the mirrors are as current as they can be.

        Skips, conflicts and a tripped guard do not count against it: another pass
        cannot fix them, and each has an alert of its own.
        """
        if self.error is not None or self.stopped is not None or self.remote_errors:
            return False
        return wrote_all(self.counts)

    def summary(self) -> str:
        if self.error is not None:
            return f"pass could not run after {self.duration:.2f}s: {self.error}"
        if self.stopped is not None:
            return f"pass stopped after {self.duration:.2f}s: {self.stopped}"
        counts = " ".join(f"{k}={self.counts.get(k, 0)}" for k in FIELDS)
        extra = "".join(f" {k}={self.counts[k]}" for k in OCCASIONAL if self.counts.get(k))
        verb = "dry run planned" if self.dry_run else "pass done"
        failing = "".join(
            f"; remote {name} not read: {why}" for name, why in self.remote_errors.items()
        )
        return f"{verb}: {counts}{extra} duration={self.duration:.2f}s{failing}"

    def fields(self) -> dict[str, object]:
        """The summary as structured log fields, so pipelines need not parse the message."""
        fields: dict[str, object] = {
            "pass_result": self.result,
            "exit_code": self.exit_code,
            "duration_seconds": round(self.duration, 3),
            "dry_run": self.dry_run,
        }
        if self.error is not None:
            return {**fields, "error": self.error}
        if self.stopped is not None:
            return {**fields, "stopped": self.stopped}
        counts = {k: self.counts.get(k, 0) for k in (*FIELDS, *OCCASIONAL)}
        fields["counts"] = counts
        if self.objects:
            fields["objects"] = dict(self.objects)
        if self.guard:
            fields["guard"] = self.guard
        if self.retired:
            fields["retired"] = dict(self.retired)
        if len(self.by_remote) > 1 or self.remote_errors:
            fields["remotes"] = {name: dict(c) for name, c in self.by_remote.items()}
            fields["remote_errors"] = dict(self.remote_errors)
        return fields


def _mirror_result(outcomes: list[Outcome]) -> str:
    results = {o.result for o in outcomes}
    if "failed" in results:
        return "failed"
    if "abandoned" in results:
        return "abandoned"
    if "conflict" in results:
        return "conflicts"
    if "skipped" in results:
        return "skipped"
    if results == {"raced"}:
        return "raced"
    done = [o.change for o in outcomes if o.result == "done"]
    for kind in ("ServiceImport", "Service"):  # what a mirror, or an import, is named after
        if principal := [c for c in done if c.kind == kind]:
            return PAST[principal[0].action]
    orphans = (ORPHAN, ORPHAN_IMPORT)
    return "deleted" if done and all(c.reason in orphans for c in done) else "updated"


def tally(plan: Plan, outcomes: Iterable[Outcome]) -> dict[str, int]:
    """The counts of one plan, from the outcomes of a pass (which may hold other plans')."""
    mine = {id(c) for c in plan.changes}
    by_name: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if id(outcome.change) in mine:
            by_name.setdefault(outcome.change.name, []).append(outcome)
    counts = Counter(_mirror_result(group) for group in by_name.values())
    counts["unchanged"] += plan.unchanged
    counts["skipped"] += len(plan.skipped)
    counts["conflicts"] += len(plan.conflicts)
    counts["held"] += len({c.name for c in plan.held})
    if plan.empty:
        counts["empty"] = len(plan.empty)
    if plan.absent:
        counts["absent"] = len(plan.absent)
    return dict(counts)


def planned(plan: Plan) -> dict[str, int]:
    """The counts a dry run reports: what each mirror would go through."""
    outcomes = [Outcome(c, "done") for c in plan.changes]
    return tally(plan, outcomes)


def describe(change: Change) -> str:
    """One line of a dry run's diff."""
    remote = f" (remote {change.remote})" if change.remote else ""
    sign = {"create": "+", "update": "~", "recreate": "!", "delete": "-"}[change.action]
    line = f"{sign} {change.action} {change.kind} {change.object_name}{remote}: {change.reason}"
    if change.action == "update" and change.current is not None and change.desired is not None:
        line += f"\n    was: {_short(change.current)}\n    now: {_short(change.desired)}"
    return line


def _short(obj: Object) -> str:
    if isinstance(obj, EndpointSlice):
        ready = sum(1 for e in obj.endpoints if e.ready is not False)
        ports = ",".join(f"{p.port or '*'}/{p.protocol}" for p in obj.ports)
        return f"{ready} of {len(obj.endpoints)} endpoints ready, ports [{ports}]"
    if isinstance(obj, Service | ServiceImport):
        ports = ",".join(
            f"{p.name + ':' if p.name else ''}{p.port}/{p.protocol}" for p in obj.ports
        )
        if isinstance(obj, ServiceImport):
            return f"{obj.type} ports [{ports}] ips [{','.join(obj.ips)}] clusters " + (
                f"[{','.join(obj.clusters)}]"
            )
        return f"ports [{ports}]" + (
            f" externalName {obj.external_name}" if obj.external_name else ""
        )
    if isinstance(obj, ServiceExport):
        return "; ".join(f"{c.type} {c.status} {c.reason}" for c in obj.conditions)
    ready = sum(len(s.addresses) for s in obj.subsets)
    not_ready = sum(len(s.not_ready) for s in obj.subsets)
    ports = ",".join(sorted({f"{p.port}/{p.protocol}" for s in obj.subsets for p in s.ports}))
    return f"{ready} ready, {not_ready} not ready addresses, ports [{ports}]"


def describe_skip(skip: Skip) -> str:
    return f"skip Service {skip.remote}: {skip.reason}"
