"""python -m bench --clusterset: the cluster set's row (issue 21), and its freshness.

Per size: fresh control planes serving the Multi-Cluster Services API. Two members, `east` (the
plane `local`) and `west` (`remote`), each export N/2 Services of their own (bench/setworld.py),
so east imports all N. One member's ksm-sync is measured, east's: `ksm-sync once --config` with
`clusterSet: {clusterID: east}` and west as its one remote.

- cold: nothing imported yet. The floor first (bench/setfloor.py): it reads west and a twin of
  east, seeded alike, and writes into the twin, so that both start from the same state (a
  Service create costs more the more Services the server holds); then ksm-sync against east;
- unchanged: --repeat passes over the converged east, each after the floor's lists of the same
  planes; medians, the highest peak RSS, and every write of any of them (none is expected).

Requests are counted from the audit logs by user agent; RSS is ksm-sync's own VmHWM.

With --freshness instead: east's `ksm-sync loop` at each of --periods over the world of each size,
and --changes new exports (their Services made beforehand; then the ServiceExport, in east and
west in turn) at random moments, each timed until its ServiceImport is in east, against the
period plus the longest pass the loop logged meanwhile.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import setfloor, setworld, world
from bench.freshness import Loop, peak_rss_mb, summary
from bench.measure import (
    FLOOR_AGENT,
    KSM_AGENT,
    SEED_AGENT,
    Audits,
    Run,
    ksm_env,
    ksm_sync_command,
    ratio,
    run_ksm,
    verbs,
    writes,
)
from bench.raw import Raw, RawError
from tests.support import controlplane

LOCAL_ID, REMOTE_ID = "east", "west"
SEED_CONCURRENCY = 32
POLL = 0.05
RSS_TARGET_MB = 300
RATIO_TARGET = 1.2


class _Load:
    """The mean 1-minute load average while something runs, sampled every second: what the
    machine's other work took from a measurement (the start alone says little of 10 minutes)."""

    def __init__(self) -> None:
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(os.getloadavg()[0])

    def mean(self) -> float:
        self._stop.set()
        self._thread.join()
        return statistics.mean([*self.samples, os.getloadavg()[0]])


def _raw(plane: controlplane.ControlPlane, agent: str) -> Raw:
    return Raw(plane.url, plane.admin_ssl_context(), agent)


def write_config(planes: dict[str, controlplane.ControlPlane], path: Path) -> Path:
    """east's --config: a member of the set, west its one remote (JSON is YAML)."""
    config = {
        "clusterSet": {"clusterID": LOCAL_ID},
        "local": {"kubeconfig": str(planes["local"].kubeconfig)},
        "remotes": [{"name": REMOTE_ID, "kubeconfig": str(planes["remote"].kubeconfig)}],
    }
    path.write_text(json.dumps(config))
    return path


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_size(n: int, args: Any, logs: Path) -> dict[str, Any]:
    """One size: seeds, the floor's and ksm-sync's cold pass, then unchanged passes."""
    root = Path(tempfile.mkdtemp(prefix="ksm-bench-set-"))
    logs = logs / f"clusterset-n{n}"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        _say(f"n={n}: starting control planes under {root}")
        planes = controlplane.up(root / "planes", die_with_parent=True, mcs=True)
        twin = controlplane.up(root / "floor", die_with_parent=True, mcs=True)["local"]
        east, west = planes["local"], planes["remote"]
        audits = Audits(west.audit_log, east.audit_log, twin.audit_log)
        result: dict[str, Any] = {"n": n, "load_start": os.getloadavg()}

        started = time.monotonic()
        half = n // 2
        for plane, indexes in ((east, range(half)), (twin, range(half)), (west, range(half, n))):
            setworld.seed_member(_raw(plane, SEED_AGENT), indexes, SEED_CONCURRENCY)
        result["seed_seconds"] = time.monotonic() - started
        result["exports"] = {LOCAL_ID: half, REMOTE_ID: n - half}
        _say(f"n={n}: seeded {half} exports in east (and its twin), {n - half} in west "
             f"in {result['seed_seconds']:.1f}s")  # fmt: skip

        ids = (LOCAL_ID, REMOTE_ID)
        west_floor, east_floor = _raw(west, FLOOR_AGENT), _raw(east, FLOOR_AGENT)
        audits.mark()
        load = _Load()
        cold_floor = setfloor.cold(
            west_floor, _raw(twin, FLOOR_AGENT), ids, args.page_size, args.concurrency
        )
        result["floor_cold"] = {**vars(cold_floor), "load": load.mean(),
                                "requests": audits.requests(FLOOR_AGENT),
                                "detail": audits.detail(FLOOR_AGENT)}  # fmt: skip
        _say(f"n={n} floor cold: {cold_floor.seconds:.2f}s ({cold_floor.creates} creates)")

        config = write_config(planes, logs / "east.json")

        loads: dict[str, float] = {}  # ksm-sync's runs'

        def ksm(label: str) -> Run:
            argv = ["--config", str(config), "--concurrency", str(args.concurrency),
                    "--pass-timeout", "30m"]  # fmt: skip
            audits.mark()
            load = _Load()
            run = run_ksm(argv, logs / f"{label}.log")
            loads[label] = load.mean()
            run.requests = audits.requests(KSM_AGENT)
            _say(f"n={n} {label}: {run.wall:.2f}s wall, {run.peak_rss_mb:.0f} MB, "
                 f"load {loads[label]:.1f}, exit {run.exit_code}, {run.summary}")  # fmt: skip
            return run

        cold = ksm("cold")
        result["cold"] = {**vars(cold), "writes": writes(cold.requests), "load": loads["cold"],
                          "detail": audits.detail(KSM_AGENT)}  # fmt: skip

        unchanged: list[Run] = []
        floor_seconds: list[float] = []
        floor_cpu: list[float] = []
        floor_requests: dict[str, int] = {}
        floor_loads: list[float] = []
        for i in range(args.repeat):
            audits.mark()
            load = _Load()
            seen = setfloor.lists(west_floor, east_floor, ids, args.page_size)
            floor_loads.append(load.mean())
            floor_seconds.append(seen.seconds)
            floor_cpu.append(seen.cpu_seconds)
            floor_requests = audits.requests(FLOOR_AGENT)
            _say(f"n={n} list floor {i + 1}: {seen.seconds:.2f}s")
            unchanged.append(ksm(f"unchanged-{i + 1}"))
        result["list_floor"] = {"seconds": statistics.median(floor_seconds),
                                "samples": floor_seconds, "requests": floor_requests,
                                "cpu_seconds": statistics.median(floor_cpu),
                                "load": max(floor_loads)}  # fmt: skip
        result["unchanged"] = {
            **vars(sorted(unchanged, key=lambda r: r.wall)[len(unchanged) // 2]),
            "load": max(v for k, v in loads.items() if k.startswith("unchanged")),
            "peak_rss_mb": max(r.peak_rss_mb for r in unchanged),  # the worst, not the median's
            "writes": sum(writes(r.requests) for r in unchanged),  # at rest: must be 0
            "samples": [vars(r) for r in unchanged],
        }
        if result["unchanged"]["writes"]:
            _say(f"n={n}: WRITES AT REST: {[r.requests for r in unchanged]}")
        result["load_end"] = os.getloadavg()
        result["kubernetes"] = _raw(east, SEED_AGENT).request("GET", "/version").get("gitVersion")
        return result
    finally:
        controlplane.down(root / "floor")
        controlplane.down(root / "planes")
        shutil.rmtree(root, ignore_errors=True)


def _within(a: float | None, b: float | None) -> str:
    return "ok" if a is not None and b and a / b <= RATIO_TARGET else "OVER"


def table(results: dict[str, Any]) -> str:
    """The figures and their ratio to the floor, one block per size, then the targets."""
    header = (
        f"{'N':>6} {'scenario':<10} {'wall s':>7} {'pass s':>7} {'start s':>7} {'floor s':>7} "
        f"{'wall/fl':>7} {'pass/fl':>7} {'cpu s':>6} {'fl cpu':>6} {'RSS MB':>6} {'writes':>6} "
        f"{'load':>11}  requests (ksm-sync | floor)"
    )
    lines = [header, "-" * len(header)]
    targets = []
    for r in results["sizes"]:
        n = r["n"]
        for name, run, fl in (("cold", r["cold"], r["floor_cold"]),
                              ("unchanged", r["unchanged"], r["list_floor"])):  # fmt: skip
            start = run["wall"] - (run["pass_seconds"] or 0)
            lines.append(
                f"{n:>6} {name:<10} {run['wall']:7.2f} {run['pass_seconds'] or 0:7.2f} "
                f"{start:7.2f} {fl['seconds']:7.2f} {ratio(run['wall'], fl['seconds']):>7} "
                f"{ratio(run['pass_seconds'], fl['seconds']):>7} {run['cpu_seconds']:6.2f} "
                f"{fl['cpu_seconds']:6.2f} {run['peak_rss_mb']:6.0f} {run['writes']:>6} "
                f"{run['load']:5.2f}|{fl['load']:<5.2f}  "
                f"{verbs(run['requests'])} | {verbs(fl['requests'])}"
            )
            targets.append(
                f"  {n:>6} {name:<10} pass {ratio(run['pass_seconds'], fl['seconds'])} "
                f"{_within(run['pass_seconds'], fl['seconds'])}, "
                f"wall {ratio(run['wall'], fl['seconds'])} {_within(run['wall'], fl['seconds'])}"
            )
        exports = ", ".join(f"{count} in {member}" for member, count in r["exports"].items())
        lines.append(
            f"{'':>6} load {r['load_start'][0]:.2f} -> {r['load_end'][0]:.2f} (1 min); "
            f"seeding {r['seed_seconds']:.1f}s; Kubernetes {r.get('kubernetes')}; "
            f"exports {exports}"
        )
    largest = max(results["sizes"], key=lambda r: r["n"])
    rss = max(largest["cold"]["peak_rss_mb"], largest["unchanged"]["peak_rss_mb"])
    at_rest = {r["n"]: r["unchanged"]["writes"] for r in results["sizes"]}
    lines += [
        "east's ksm-sync measured, west its remote; load: the mean 1-minute load average during "
        "ksm-sync's run | the floor's (of the unchanged ones, the highest)",
        f"targets: pass and whole process at most {RATIO_TARGET}x the floor:",
        *targets,
        f"  zero writes at rest: {'ok' if not any(at_rest.values()) else 'MISSED'} "
        f"({', '.join(f'{n}: {w}' for n, w in at_rest.items())})",
        f"  peak RSS at {largest['n']} under {RSS_TARGET_MB} MB: {rss:.0f} MB "
        f"{'ok' if rss < RSS_TARGET_MB else 'MISSED'}",
    ]
    return "\n".join(lines)


def freshness_size(n: int, periods: list[float], changes: int, logs: Path) -> list[dict]:
    """east's loop at each period over the world of size n; new exports timed to their import."""
    root = Path(tempfile.mkdtemp(prefix="ksm-fresh-set-"))
    try:
        planes = controlplane.up(root / "planes", die_with_parent=True, mcs=True)
        east, west = _raw(planes["local"], SEED_AGENT), _raw(planes["remote"], SEED_AGENT)
        half = n // 2
        setworld.seed_member(east, range(half), SEED_CONCURRENCY)
        setworld.seed_member(west, range(half, n), SEED_CONCURRENCY)
        # The new exports' Services and slices, in east and west in turn, made beforehand: what
        # is timed is the ServiceExport alone.
        new = [(east if k % 2 == 0 else west, n + k) for k in range(changes * len(periods))]
        for member in (east, west):
            picked = [i for m, i in new if m is member]
            setworld.add(member, picked, SEED_CONCURRENCY, export=False)
        config = write_config(planes, root / "east.json")
        rows = []
        for run, period in enumerate(periods):
            log = logs / f"clusterset-freshness-n{n}-p{period:g}.log"
            loop = _start_loop(config, period, log)
            try:
                loop.wait_passes(2, timeout=3600)  # the cold pass and one more
                done = len(loop.passes())
                batch = new[run * changes : (run + 1) * changes]
                delays = _timed(batch, east, period, seed=run)
                passes = [p["duration_seconds"] for p in loop.passes()[done:]]
                rss = peak_rss_mb(loop.proc.pid)
            finally:
                loop.stop()
            bound = period + max(passes)
            row = {"n": n, "period": period, "changes": changes, "import": summary(delays),
                   "pass_median": statistics.median(passes), "pass_max": max(passes),
                   "passes": len(passes), "bound": bound, "peak_rss_mb": rss,
                   "load": os.getloadavg()}  # fmt: skip
            _say(f"[clusterset freshness] {_freshness_row(row)}")
            rows.append(row)
        return rows
    finally:
        controlplane.down(root / "planes")
        shutil.rmtree(root, ignore_errors=True)


def _start_loop(config: Path, period: float, log: Path) -> Loop:
    argv = [*ksm_sync_command(), "loop", "--config", str(config), "--resync-period",
            f"{period:g}s", "--listen-address", "", "--log-format", "json"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ksm_env())
    return Loop(proc, log)


def _timed(new: list[tuple[Raw, int]], east: Raw, period: float, seed: int) -> list[float]:
    """Exports each of new at a random moment within a period of the last; seconds until
    east serves its ServiceImport."""
    rng = random.Random(seed)
    delays: list[float] = []
    lock = threading.Lock()
    watchers = []
    for member, i in new:
        time.sleep(rng.uniform(0, period))
        made = time.monotonic()
        setworld.create_export(member, i)
        watcher = threading.Thread(target=_watch, args=(east, i, made, delays, lock), daemon=True)
        watcher.start()
        watchers.append(watcher)
    for watcher in watchers:
        watcher.join(timeout=3 * period + 600)
    return delays


def _watch(east: Raw, i: int, made: float, delays: list[float], lock: threading.Lock) -> None:
    namespace, name = world.where(i)
    path = f"{setworld.collection(setworld.VERSIONS[0], 'serviceimports', namespace)}/{name}"
    deadline = made + 600
    while time.monotonic() < deadline:
        try:
            east.request("GET", path)
        except RawError as error:
            if error.status != 404:
                raise
            time.sleep(POLL)
            continue
        with lock:
            delays.append(time.monotonic() - made)
        return


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _freshness_row(r: dict) -> str:
    m = r["import"]
    within = m["max"] is not None and m["samples"] == r["changes"] and m["max"] <= r["bound"]
    return (
        f"{r['n']:>6} {r['period']:>5g}s {_s(m['median']):>6} {_s(m['p99']):>6} "
        f"{_s(m['max']):>6} {m['samples']:>3}/{r['changes']:<3} {r['pass_median']:6.2f} "
        f"{r['pass_max']:6.2f} {r['bound']:6.1f} {'ok' if within else 'MISSED':>6} "
        f"{r['peak_rss_mb']:6.0f}  load {r['load'][0]:.2f}"
    )


def freshness_table(rows: list[dict]) -> str:
    header = (
        f"{'N':>6} {'period':>6} {'new export -> ServiceImport s':^27} {'pass s':^13} "
        f"{'bound':>6} {'within':>6} {'RSS':>6}\n"
        f"{'':>6} {'':>6} {'median':>6} {'p99':>6} {'max':>6} {'seen':>7} {'median':>6} "
        f"{'max':>6} {'s':>6} {'':>6} {'MB':>6}"
    )
    footer = "bound: the period plus the longest pass the loop logged while the exports were made"
    return "\n".join([header, *(_freshness_row(r) for r in rows), footer])
