"""Measuring a run: requests by verb from the audit log, and ksm-sync's wall time and peak RSS.

The audit log counts what the API server saw, whoever sent it; filtering by user agent
keeps the seeding and the floor's requests out of ksm-sync's figures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

KSM_AGENT = "ksm-sync/"
FLOOR_AGENT = "ksm-bench-floor"
SEED_AGENT = "ksm-bench-seed"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SUMMARY = re.compile(r"pass done: (?P<counts>.*) duration=(?P<duration>[0-9.]+)s")
AUDIT_SETTLE = 0.3  # the ResponseComplete event is written just after the response


class AuditWindow:
    """Events an API server logged between mark() and counts()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def counts(self, agent_prefix: str) -> Counter[str]:
        """'verb' and 'verb resource' counts of requests by agents starting with agent_prefix
        (a subresource after its resource; a path where the request names no resource)."""
        time.sleep(AUDIT_SETTLE)
        counts: Counter[str] = Counter()
        with self.path.open("rb") as f:
            f.seek(self.offset)
            for line in f:
                event = json.loads(line)
                if event.get("stage") != "ResponseComplete":
                    continue
                if not str(event.get("userAgent", "")).startswith(agent_prefix):
                    continue
                verb = event.get("verb", "?")
                ref = event.get("objectRef") or {}
                resource = ref.get("resource") or event.get("requestURI", "?")
                if ref.get("subresource"):
                    resource += f"/{ref['subresource']}"
                counts[verb] += 1
                counts[f"{verb} {resource}"] += 1
        return counts


class Audits:
    """The audit windows of several API servers, marked and counted together."""

    def __init__(self, *paths: Path) -> None:
        self.windows = [AuditWindow(path) for path in paths]

    def mark(self) -> None:
        for window in self.windows:
            window.mark()

    def requests(self, agent: str) -> dict[str, int]:
        """Requests by verb since the mark, of every server."""
        return by_verb(*(window.counts(agent) for window in self.windows))

    def detail(self, agent: str) -> dict[str, int]:
        """Requests by verb and resource since the mark, of every server."""
        out: Counter[str] = Counter()
        for window in self.windows:
            out.update({k: v for k, v in window.counts(agent).items() if " " in k})
        return dict(sorted(out.items()))


def by_verb(*windows: Counter[str]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for window in windows:
        total.update({k: v for k, v in window.items() if " " not in k})
    return dict(sorted(total.items()))


def writes(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k in WRITE_VERBS)


@dataclass
class Run:
    """One `ksm-sync once`: how long, how much memory, what it reported."""

    argv: list[str]
    wall: float
    peak_rss_mb: float
    cpu_seconds: float  # user + system: on a shared 2-core box, CPU taken from the servers
    exit_code: int
    pass_seconds: float | None
    summary: str
    requests: dict[str, int] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


def ksm_sync_command() -> list[str]:
    """The installed CLI beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "ksm-sync"
    return [str(beside)] if beside.exists() else ["ksm-sync"]


class _PeakRss:
    """The peak RSS of a running process, sampled from /proc until it exits.

    Not wait4's ru_maxrss: Linux carries a process's high-water mark across exec, so a child
    started by a big parent (this one, after parsing 10,000 objects for the floor) reports
    the parent's size. VmHWM is the process's own, and only ever grows.
    """

    def __init__(self, pid: int) -> None:
        self.pid, self.kb = pid, 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            found = [
                int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:")
            ]
            if not found:
                return  # exited: no memory any more
            self.kb = max(self.kb, found[0])
            time.sleep(0.01)

    def mb(self) -> float:
        self._thread.join()
        return self.kb / 1024


def ksm_env() -> dict[str, str]:
    """This environment without what would configure ksm-sync behind its arguments' back.

    Bytecode is written and reused, as the image's install compiles it: a run measures the
    start-up a CronJob pays, not the compiling of ksm-sync's modules every time.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith("KSM_")
            and k not in ("KUBECONFIG", "PYTHONDONTWRITEBYTECODE")}  # fmt: skip


def run_ksm(args: list[str], log: Path, prefix: list[str] | None = None) -> Run:
    """Runs the real CLI; its own peak RSS (VmHWM), not the control planes' or this one's."""
    env = ksm_env()
    argv = [*(prefix or ksm_sync_command()), "once", *args]
    load = os.getloadavg()
    with log.open("w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        peak = _PeakRss(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    match = SUMMARY.search(text)
    return Run(
        argv=argv,
        wall=wall,
        peak_rss_mb=peak.mb(),
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        exit_code=proc.returncode,
        pass_seconds=float(match["duration"]) if match else None,
        summary=match.group(0) if match else (text.strip().splitlines() or [""])[-1],
        load=load,
    )


def ratio(a: float | None, b: float | None) -> str:
    """a against b, as the tables print it."""
    return f"{a / b:.2f}x" if a is not None and b else "-"


def verbs(requests: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in requests.items()) or "-"
