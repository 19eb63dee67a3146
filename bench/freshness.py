"""python -m bench --freshness: how stale a mirror gets in `loop`, and what each period costs.

Per size: fresh control planes and a CoreDNS serving the mirrors; N remote headless Services
with one slice each, mirrored once. Then per resync period:

1. cost: `loop` runs a few quiet passes; the API servers' CPU seconds (both, from /proc) and
   ksm-sync's own CPU and peak memory over them, per pass and per hour. The API servers' own
   idle rate (controllers, leases, watches) is measured first, with no ksm-sync running, and
   taken off: what is left is what the passes cost them;
2. freshness: remote slices change at random moments (one IP replaced); each change is timed
   until the local mirror holds the new IP, and until the local CoreDNS answers it.

Changes are watched by GETs of the changed slices only, so that watching costs the servers
little; cost is measured before any change, on passes alone.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from bench import world
from bench.measure import ksm_sync_command
from bench.raw import Raw, RawError
from tests.support import controlplane

NAMESPACE = "mirrors"
POLL = 0.05


@dataclass
class Loop:
    """A running `ksm-sync loop`, its JSON log in a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def passes(self) -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if str(x.get("message", "")).startswith("pass done")]

    def wait_passes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.passes()) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"loop: {count} passes not done\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def apiserver_pids(planes: dict[str, controlplane.ControlPlane]) -> list[int]:
    return [int((p.dir / "kube-apiserver.pid").read_text().split()[0]) for p in planes.values()]


def start_loop(planes: dict[str, controlplane.ControlPlane], period: float, log: Path) -> Loop:
    args = [
        "loop", "--target-kube-config", str(planes["remote"].kubeconfig),
        "--kube-config", str(planes["local"].kubeconfig), "--mirror-ns", NAMESPACE,
        "--label-selector", world.SELECTOR, "--svc-prefix", world.PREFIX,
        "--resync-period", f"{period:g}s", "--listen-address", "", "--log-format", "json",
    ]  # fmt: skip
    out = log.open("w")
    proc = subprocess.Popen([*ksm_sync_command(), *args], stdout=out, stderr=subprocess.STDOUT)
    return Loop(proc, log)


def idle_rate(planes: dict[str, controlplane.ControlPlane], seconds: float = 60.0) -> float:
    """CPU seconds per second both API servers spend with no ksm-sync running."""
    servers = apiserver_pids(planes)
    before = sum(cpu_seconds(p) for p in servers)
    time.sleep(seconds)
    return (sum(cpu_seconds(p) for p in servers) - before) / seconds


def cost(
    planes: dict[str, controlplane.ControlPlane], loop: Loop, passes: int, idle: float
) -> dict:
    """CPU of both API servers (beyond their idle rate) and of ksm-sync over quiet passes."""
    servers = apiserver_pids(planes)
    done = len(loop.passes())
    server_cpu = sum(cpu_seconds(p) for p in servers)
    ksm_cpu, started = cpu_seconds(loop.proc.pid), time.monotonic()
    loop.wait_passes(done + passes, timeout=passes * 600)
    elapsed = time.monotonic() - started
    server_cpu = sum(cpu_seconds(p) for p in servers) - server_cpu - idle * elapsed
    ksm_cpu = cpu_seconds(loop.proc.pid) - ksm_cpu
    durations = [p["duration_seconds"] for p in loop.passes()[done:]]
    return {
        "passes": passes,
        "elapsed": elapsed,
        "pass_seconds": statistics.median(durations),
        "apiserver_cpu_per_pass": server_cpu / passes,
        "apiserver_cpu_per_hour": server_cpu / elapsed * 3600,
        "ksm_cpu_per_pass": ksm_cpu / passes,
        "ksm_cpu_per_hour": ksm_cpu / elapsed * 3600,
        "ksm_peak_rss_mb": peak_rss_mb(loop.proc.pid),
    }


def freshness(
    remote: Raw, local: Raw, dns_address: str, n: int, period: float, changes: int, run: int
) -> dict[str, list[float]]:
    """Seconds from each remote change until the mirror, and CoreDNS, show it. run numbers
    the calls, so that every change of every call puts a new IP in place."""
    rng = random.Random(run)
    host, port = dns_address.rsplit(":", 1)
    delays: dict[str, list[float]] = {"mirror": [], "dns": []}
    lock = threading.Lock()
    watchers = []
    for change, i in enumerate(rng.sample(range(n), changes)):
        time.sleep(rng.uniform(0, period))
        namespace, name = world.where(i)
        ip = f"10.{250 - run}.{change // 250}.{change % 250 + 1}"
        made = time.monotonic()
        world.replace_endpoint(remote, i, ip)
        watcher = threading.Thread(
            target=_watch,
            args=(local, host, int(port), namespace, name, ip, made, delays, lock),
            daemon=True,
        )
        watcher.start()
        watchers.append(watcher)
    for watcher in watchers:
        watcher.join(timeout=3 * period + 600)
    return delays


def _watch(local: Raw, host: str, port: int, namespace: str, name: str, ip: str, made: float,
           delays: dict[str, list[float]], lock: threading.Lock) -> None:  # fmt: skip
    mirror = f"{world.PREFIX}-{name}-{world.SEPARATOR}-{namespace}"
    slice_name = world.mirror_slice_name(mirror, f"{name}-1")
    path = f"{world.SLICES}/namespaces/{NAMESPACE}/endpointslices/{slice_name}"
    question = f"{name}.{namespace}.svc.cluster.{world.PREFIX}"
    in_mirror = in_dns = None
    deadline = made + 1200
    while (in_mirror is None or in_dns is None) and time.monotonic() < deadline:
        if in_mirror is None:
            try:
                found = local.request("GET", path)
                if any(ip in e["addresses"] for e in found.get("endpoints") or ()):
                    in_mirror = time.monotonic() - made
            except RawError:
                pass
        if in_dns is None:
            answer = dns.query.udp(
                dns.message.make_query(question, "A"), host, port=port, timeout=2
            )
            if any(getattr(r, "address", None) == ip for rrset in answer.answer for r in rrset):
                in_dns = time.monotonic() - made
        time.sleep(POLL)
    with lock:
        if in_mirror is not None:
            delays["mirror"].append(in_mirror)
        if in_dns is not None:
            delays["dns"].append(in_dns)


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p99": None, "max": None, "samples": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p99": p99, "max": ordered[-1],
            "samples": len(ordered)}  # fmt: skip


def run_size(n: int, periods: list[float], changes: int, root: Path, logs: Path) -> list[dict]:
    planes = controlplane.up(root, die_with_parent=True, endpointslice_mirroring=False)
    try:
        remote = Raw(planes["remote"].url, planes["remote"].admin_ssl_context(), "ksm-bench-seed")
        local = Raw(planes["local"].url, planes["local"].admin_ssl_context(), "ksm-bench-seed")
        world.seed(remote, n, 32, headless=True)
        local.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        address = controlplane.dns(root, svc_prefix=world.PREFIX, mirror_ns=NAMESPACE,
                                   die_with_parent=True)  # fmt: skip
        idle = idle_rate(planes)
        print(f"[freshness] n={n}: API servers idle {idle * 3600:.0f} CPU s/hour", file=sys.stderr)
        rows = []
        for run, period in enumerate(periods):
            loop = start_loop(planes, period, logs / f"freshness-n{n}-p{period:g}.log")
            try:
                loop.wait_passes(2, timeout=3600)  # the first (cold, or catching up) and one more
                spent = cost(planes, loop, passes=3, idle=idle)
                delays = freshness(remote, local, address, n, period, changes, run)
            finally:
                loop.stop()
            row = {"n": n, "period": period, "apiserver_idle_cpu_per_hour": idle * 3600, **spent,
                   "mirror": summary(delays["mirror"]), "dns": summary(delays["dns"])}  # fmt: skip
            print(f"[freshness] {row_text(row)}", file=sys.stderr, flush=True)
            rows.append(row)
        return rows
    finally:
        controlplane.down(root)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def row_text(r: dict) -> str:
    m, d = r["mirror"], r["dns"]
    return (
        f"{r['n']:>6} {r['period']:>5g}s {r['pass_seconds']:6.2f} "
        f"{_s(m['median']):>6} {_s(m['p99']):>6} {_s(m['max']):>6} "
        f"{_s(d['median']):>6} {_s(d['p99']):>6} {_s(d['max']):>6} "
        f"{r['apiserver_cpu_per_pass']:7.2f} {r['apiserver_cpu_per_hour']:8.0f} "
        f"{r['ksm_cpu_per_pass']:6.2f} {r['ksm_cpu_per_hour']:7.0f} {r['ksm_peak_rss_mb']:6.0f}"
    )


def table(rows: list[dict]) -> str:
    header = (
        f"{'N':>6} {'period':>6} {'pass s':>6} {'mirror staleness s':^20} "
        f"{'DNS staleness s':^20} {'API servers CPU s':^16} {'ksm-sync CPU s':^14} {'RSS':>6}\n"
        f"{'':>6} {'':>6} {'':>6} {'median':>6} {'p99':>6} {'max':>6} {'median':>6} {'p99':>6} "
        f"{'max':>6} {'/pass':>7} {'/hour':>8} {'/pass':>6} {'/hour':>7} {'MB':>6}"
    )
    return "\n".join([header, *(row_text(r) for r in rows)])
