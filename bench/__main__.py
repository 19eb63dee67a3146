"""python -m bench [--sizes 1000,10000]: seeds, runs ksm-sync through its CLI, prints the table.

Per size: fresh control planes in a temporary directory; N remote Services (two ports), each
with Endpoints and an EndpointSlice (three ready addresses), over 10 namespaces; then the
floor's cold pass, ksm-sync's cold pass, unchanged passes against list floors (interleaved,
median of --repeat), and a 1% churn, all in one --endpoints-api mode. Results go to
bench-results/ as JSON, beside the ksm-sync logs.

The floor's creates go to a second local control plane, as empty as ksm-sync's: a Service
create costs the API server more the more Services exist (ClusterIP allocation), so
creating into the same server, one after the other, would favour whichever ran first.

--clusterset: the Multi-Cluster Services row instead (bench/clusterset.py): N exports over two
members, one member's cold and unchanged passes against a floor doing the same lists and writes,
writes at rest and peak RSS; with --freshness, how soon `loop` imports a new export.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import clusterset, floor, freshness, world
from bench.measure import (
    FLOOR_AGENT,
    KSM_AGENT,
    SEED_AGENT,
    Audits,
    Run,
    ratio,
    run_ksm,
    verbs,
    writes,
)
from bench.raw import Raw
from tests.support import controlplane

REPO = Path(__file__).resolve().parents[1]
SEED_CONCURRENCY = 32


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Bench:
    """One size: its control planes, clients and audit windows."""

    def __init__(
        self,
        n: int,
        planes: dict[str, controlplane.ControlPlane],
        floor_plane: controlplane.ControlPlane,
        args: Any,
    ) -> None:
        self.n, self.args = n, args
        self.remote_planes = [p for name, p in planes.items() if name != "local"]
        self.local_plane = planes["local"]
        self.logs = Path(args.output).parent / "logs" / f"n{n}"
        self.logs.mkdir(parents=True, exist_ok=True)

        def raw(plane: controlplane.ControlPlane, agent: str) -> Raw:
            return Raw(plane.url, plane.admin_ssl_context(), agent)

        self.remote_seeds = [raw(p, SEED_AGENT) for p in self.remote_planes]
        self.local_seed = raw(self.local_plane, SEED_AGENT)
        self.remote_floors = [raw(p, FLOOR_AGENT) for p in self.remote_planes]
        self.local_floor = raw(self.local_plane, FLOOR_AGENT)
        self.floor_seed = raw(floor_plane, SEED_AGENT)
        self.floor_writes = raw(floor_plane, FLOOR_AGENT)  # the floor's own local cluster
        self.audits = Audits(
            *(p.audit_log for p in (*self.remote_planes, self.local_plane, floor_plane))
        )

    def mark(self) -> None:
        self.audits.mark()

    def requests(self, agent: str) -> dict[str, Any]:
        return self.audits.requests(agent)

    def detail(self, agent: str) -> dict[str, int]:
        return self.audits.detail(agent)

    def namespace(self, name: str, *, floor_side: bool = False) -> str:
        client = self.floor_seed if floor_side else self.local_seed
        client.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        return name

    def where(self, namespace: str) -> list[str]:
        """ksm-sync's arguments for the remotes, the local side and the mirror namespace: the
        options for one remote, a --config file for several."""
        local = ["--kube-config", str(self.local_plane.kubeconfig), "--mirror-ns", namespace]
        if len(self.remote_planes) == 1:
            return [*local, "--target-kube-config", str(self.remote_planes[0].kubeconfig),
                    "--label-selector", world.SELECTOR, "--svc-prefix", world.PREFIX]  # fmt: skip
        remotes = [
            {"name": f"r{i + 1}", "prefix": world.prefix_of(i, len(self.remote_planes)),
             "labelSelector": world.SELECTOR, "kubeconfig": str(plane.kubeconfig)}
            for i, plane in enumerate(self.remote_planes)
        ]  # fmt: skip
        config = self.logs / f"config-{namespace}.json"  # JSON is YAML
        config.write_text(json.dumps({"remotes": remotes}))
        return [*local, "--config", str(config)]

    def ksm(self, namespace: str, label: str, concurrency: int | None = None) -> Run:
        args = [
            *self.where(namespace),
            "--concurrency", str(concurrency or self.args.concurrency),
            "--pass-timeout", "30m",
            "--endpoints-api", self.args.endpoints_api,
        ]  # fmt: skip
        self.mark()
        run = run_ksm(args, self.logs / f"{label}.log")
        run.requests = self.requests(KSM_AGENT)
        _say(
            f"n={self.n} {label}: {run.wall:.2f}s wall, {run.peak_rss_mb:.0f} MB, "
            f"exit {run.exit_code}, {run.summary}"
        )
        return run

    def run(self) -> dict[str, Any]:
        n, args = self.n, self.args
        result: dict[str, Any] = {"n": n, "load_start": os.getloadavg()}
        started = time.monotonic()
        each = n // len(self.remote_seeds)
        for remote in self.remote_seeds:
            world.seed(remote, each, SEED_CONCURRENCY)
        result["seed_seconds"] = time.monotonic() - started
        result["remotes"] = len(self.remote_seeds)
        _say(f"n={n}: seeded {each} Services with Endpoints and slices in each of "
             f"{len(self.remote_seeds)} remotes in {result['seed_seconds']:.1f}s")  # fmt: skip

        self.namespace("mirrors", floor_side=True)
        self.mark()
        cold_floor = floor.cold(
            self.remote_floors,
            self.floor_writes,
            "mirrors",
            args.page_size,
            args.concurrency,
            args.endpoints_api,
        )
        result["floor_cold"] = {**vars(cold_floor), "requests": self.requests(FLOOR_AGENT)}
        _say(f"n={n} floor cold: {cold_floor.seconds:.2f}s ({cold_floor.creates} creates)")

        mirrors = self.namespace("mirrors")
        cold = self.ksm(mirrors, "cold")
        result["cold"] = vars(cold)

        unchanged: list[Run] = []
        list_floors: list[float] = []
        list_cpu: list[float] = []
        floor_requests: dict[str, int] = {}
        for i in range(args.repeat):
            self.mark()
            seen = floor.lists(
                self.remote_floors, self.local_floor, mirrors, args.page_size, args.endpoints_api
            )
            list_floors.append(seen.seconds)
            list_cpu.append(seen.cpu_seconds)
            floor_requests = self.requests(FLOOR_AGENT)
            _say(f"n={n} list floor {i + 1}: {seen.seconds:.2f}s")
            unchanged.append(self.ksm(mirrors, f"unchanged-{i + 1}"))
        result["list_floor"] = {"seconds": statistics.median(list_floors), "samples": list_floors,
                                "cpu_seconds": statistics.median(list_cpu),
                                "requests": floor_requests}  # fmt: skip
        result["unchanged"] = {
            **vars(sorted(unchanged, key=lambda r: r.wall)[len(unchanged) // 2]),
            "peak_rss_mb": max(r.peak_rss_mb for r in unchanged),  # the worst, not the median's
            "samples": [vars(r) for r in unchanged],
        }

        changed = sum(world.churn(r, each, SEED_CONCURRENCY) for r in self.remote_seeds)
        churn = self.ksm(mirrors, "churn")
        result["churn"] = {**vars(churn), "changes": changed, "writes": writes(churn.requests)}
        result["churn"]["write_detail"] = {
            k: v for k, v in self.detail(KSM_AGENT).items() if k.split()[0] in ("patch", "create",
                                                                              "update", "delete")
        }  # fmt: skip

        for c in args.sweep if n == args.sweep_at else ():
            swept_floor = floor.cold(
                self.remote_floors,
                self.floor_writes,
                self.namespace(f"sweep-c{c}", floor_side=True),
                args.page_size,
                c,
                args.endpoints_api,
            )
            swept = self.ksm(self.namespace(f"sweep-c{c}"), f"cold-c{c}", concurrency=c)
            result.setdefault("sweep", []).append(
                {"concurrency": c, "ksm_wall": swept.wall, "ksm_pass": swept.pass_seconds,
                 "floor": swept_floor.seconds, "floor_creates": swept_floor.create_seconds}
            )  # fmt: skip
            _say(f"n={n} sweep c={c}: ksm {swept.wall:.2f}s, floor {swept_floor.seconds:.2f}s")

        if args.profile:
            self.profile(mirrors)
        result["load_end"] = os.getloadavg()
        return result

    def profile(self, mirrors: str) -> None:
        """A pyinstrument report of an unchanged pass (not timed: profiling slows it).

        Only that pass: pyinstrument samples the main thread, and a cold pass writes from
        worker threads (profile those with py-spy, which samples every thread).
        """
        out = Path(self.args.output).parent
        for label, namespace in (("unchanged", mirrors),):
            report = out / f"profile-n{self.n}-{label}.txt"
            prefix = [sys.executable, "-m", "pyinstrument", "-o", str(report), "-m", "ksm_sync"]
            args = [
                *self.where(namespace), "--concurrency", str(self.args.concurrency),
                "--pass-timeout", "30m", "--endpoints-api", self.args.endpoints_api,
            ]  # fmt: skip
            run = run_ksm(args, self.logs / f"profile-{label}.log", prefix=prefix)
            _say(f"n={self.n} profile {label}: {run.wall:.2f}s -> {report}")


def bench_size(n: int, args: Any) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ksm-bench-"))
    try:
        _say(f"n={n}: starting control planes under {root}")
        # The planes run the controllers of a real cluster, but for EndpointSliceMirroring in
        # Endpoints mode: it would copy every mirror into slices on the local plane while
        # ksm-sync is measured, work the floor's plane would not do.
        mirroring = args.endpoints_api != "endpoints"
        planes = controlplane.up(
            root / "planes",
            remotes=args.remotes,
            die_with_parent=True,
            endpointslice_mirroring=mirroring,
        )
        floor_planes = controlplane.up(
            root / "floor", die_with_parent=True, endpointslice_mirroring=mirroring
        )
        bench = Bench(n, planes, floor_planes["local"], args)
        result = bench.run()
        result["kubernetes"] = bench.remote_seeds[0].request("GET", "/version").get("gitVersion")
        return result
    finally:
        controlplane.down(root / "floor")
        controlplane.down(root / "planes")
        shutil.rmtree(root, ignore_errors=True)


def table(results: dict[str, Any]) -> str:
    """The figures and their ratio to the floor, one block per size."""
    header = (
        f"{'N':>6} {'scenario':<10} {'wall s':>7} {'pass s':>7} {'start s':>7} {'floor s':>7} "
        f"{'wall/fl':>7} {'pass/fl':>7} {'cpu s':>6} {'fl cpu':>6} {'RSS MB':>6}  "
        "requests (ksm-sync | floor)"
    )
    lines = [header, "-" * len(header)]
    for r in results["sizes"]:
        n = r["n"]
        rows = [
            ("cold", r["cold"], r["floor_cold"]),
            ("unchanged", r["unchanged"], r["list_floor"]),
            ("churn", r["churn"], {}),
        ]
        for name, run, fl_run in rows:
            floor_s, floor_req = fl_run.get("seconds"), fl_run.get("requests", {})
            fl = f"{floor_s:7.2f}" if floor_s else f"{'-':>7}"
            fl_cpu = f"{fl_run['cpu_seconds']:6.2f}" if "cpu_seconds" in fl_run else f"{'-':>6}"
            extra = (
                f" | writes {run['writes']} for {run['changes']} changes"
                if name == "churn"
                else f" | {verbs(floor_req)}"
            )
            start = run["wall"] - (run["pass_seconds"] or 0)  # the process around the pass
            lines.append(
                f"{n:>6} {name:<10} {run['wall']:7.2f} {run['pass_seconds'] or 0:7.2f} "
                f"{start:7.2f} {fl} "
                f"{ratio(run['wall'], floor_s):>7} {ratio(run['pass_seconds'], floor_s):>7} "
                f"{run['cpu_seconds']:6.2f} {fl_cpu} {run['peak_rss_mb']:6.0f}  "
                f"{verbs(run['requests'])}{extra}"
            )
        for s in r.get("sweep", []):
            lines.append(
                f"{n:>6} {'cold c=' + str(s['concurrency']):<10} {s['ksm_wall']:7.2f} "
                f"{s['ksm_pass'] or 0:7.2f} {'':>7} {s['floor']:7.2f} "
                f"{ratio(s['ksm_wall'], s['floor']):>7} {ratio(s['ksm_pass'], s['floor']):>7}"
            )
        lines.append(
            f"{'':>6} load {r['load_start'][0]:.2f} -> {r['load_end'][0]:.2f} (1 min); "
            f"seeding {r['seed_seconds']:.1f}s; Kubernetes {r.get('kubernetes')}; "
            f"--endpoints-api {results['args']['endpoints_api']}; remotes {r.get('remotes', 1)}"
        )
    sizes = {r["n"]: r for r in results["sizes"]}
    if len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        growth = []
        for name, fl in (("cold", "floor_cold"), ("unchanged", "list_floor")):
            k = sizes[large][name]["wall"] / sizes[small][name]["wall"]
            f = sizes[large][fl]["seconds"] / sizes[small][fl]["seconds"]
            growth.append(f"{name} x{k:.1f} (floor x{f:.1f})")
        lines.append(f"growth {small} -> {large} (x{large // small}): " + ", ".join(growth))
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[1000, 10000], help="e.g. 1000,10000")
    parser.add_argument("--concurrency", type=int, default=16, help="ksm-sync's and the floor's")
    parser.add_argument("--page-size", type=int, default=500, help="the floor's list page size")
    parser.add_argument("--repeat", type=int, default=3, help="unchanged passes (median kept)")
    parser.add_argument("--sweep", type=ints, default=[], help="extra cold passes, e.g. 4,8,32")
    parser.add_argument("--sweep-at", type=int, help="the size to sweep at (default: smallest)")
    parser.add_argument("--profile", action="store_true", help="pyinstrument report too")
    parser.add_argument(
        "--remotes", type=int, default=1, help="remote planes, each with size/remotes Services"
    )
    parser.add_argument(
        "--freshness",
        action="store_true",
        help="instead: staleness and cost of `loop` at each of --periods (see bench/freshness.py)",
    )
    parser.add_argument(
        "--clusterset",
        action="store_true",
        help="instead: the cluster set's row, N exports over two members, one member's ksm-sync "
        "against its floor; with --freshness, how soon a new export is imported in `loop` "
        "(see bench/clusterset.py)",
    )
    parser.add_argument(
        "--periods",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[5.0, 15.0, 60.0],
        help="resync periods in seconds, for --freshness",
    )
    parser.add_argument("--changes", type=int, default=20, help="remote changes per period")
    parser.add_argument(
        "--endpoints-api",
        choices=("endpointslices", "endpoints"),
        default="endpointslices",
        help="what ksm-sync (and the floor) read and write",
    )
    parser.add_argument("--output", help="results JSON (default bench-results/<time>.json)")
    args = parser.parse_args(argv)
    if not args.output:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        args.output = str(REPO / "bench-results" / f"{stamp}.json")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    args.sweep_at = args.sweep_at or min(args.sizes)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.clusterset:
        return main_clusterset(args)
    if args.freshness:
        return main_freshness(args)
    results: dict[str, Any] = {
        "started": _now(),
        "uptime_start": _uptime(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "args": {k: v for k, v in vars(args).items()},
        "sizes": [],
    }
    for n in args.sizes:
        results["sizes"].append(bench_size(n, args))
        Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    results["finished"] = _now()
    results["uptime_end"] = _uptime()
    results["kubernetes"] = results["sizes"][0].get("kubernetes") if results["sizes"] else None
    Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    print(f"{results['cores']} cores; {results['uptime_start']}")
    print(table(results))
    print(f"{results['uptime_end']}\nresults: {args.output}")
    return 0


def main_freshness(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {
        "started": _now(), "uptime_start": _uptime(), "cores": os.cpu_count(),
        "args": vars(args), "rows": [],
    }  # fmt: skip
    logs = Path(args.output).parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        root = Path(tempfile.mkdtemp(prefix="ksm-fresh-"))
        try:
            results["rows"] += freshness.run_size(n, args.periods, args.changes, root, logs)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    results["uptime_end"] = _uptime()
    Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    print(f"{results['cores']} cores; {results['uptime_start']}")
    print(freshness.table(results["rows"]))
    print(f"{results['uptime_end']}\nresults: {args.output}")
    return 0


def main_clusterset(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {
        "started": _now(), "uptime_start": _uptime(), "cores": os.cpu_count(),
        "python": platform.python_version(), "args": vars(args), "sizes": [], "rows": [],
    }  # fmt: skip
    logs = Path(args.output).parent / "logs"
    for n in args.sizes:
        if args.freshness:
            results["rows"] += clusterset.freshness_size(n, args.periods, args.changes, logs)
        else:
            results["sizes"].append(clusterset.run_size(n, args, logs))
        Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    results["finished"] = _now()
    results["uptime_end"] = _uptime()
    Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    print(f"{results['cores']} cores; {results['uptime_start']}")
    if args.freshness:
        print(clusterset.freshness_table(results["rows"]))
    else:
        print(clusterset.table(results))
    print(f"{results['uptime_end']}\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
