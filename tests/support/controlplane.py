"""Local Kubernetes control planes that behave like clusters, without containers or a pod network.

Each plane runs etcd, kube-apiserver, kube-controller-manager (the controllers that turn
Deployments and StatefulSets into pods and pods into Endpoints and EndpointSlices, mirror
selectorless Endpoints into EndpointSlices, collect garbage and finalise namespaces),
kube-scheduler, and kwok, which plays the kubelet of a few fake Nodes: a pod is scheduled, becomes
Running and Ready and gets an IP from its plane's pod range (tests/support/kwok.yaml says how).
With `mcs`, every plane also serves the Multi-Cluster Services API (mcs-api's CRDs). A CoreDNS for
the `local` plane can be started beside them (`dns`).

Processes this module starts are judged alive by their own process handles; a start that fails
stops everything it started (SIGTERM, then SIGKILL) before it tries again or gives up, and says
why. Processes of an earlier `scripts/clusters up` are found through pid files that also hold the
process start time, so a reused pid is never mistaken for ours.

Standard library only, so that `scripts/clusters` runs before any virtual environment
exists. The pytest fixtures, the demo and the benchmark all start their clusters here.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import importlib.util
import ipaddress
import itertools
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ksm_sync.corefile import server_block

REPO = Path(__file__).resolve().parents[2]

LOCAL = "local"
MAX_REMOTES = 10
NODES = 3
ATTEMPTS = 3
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 5.0  # SIGTERM, then SIGKILL: a server still starting up may ignore SIGTERM
KWOK_STAGES = Path(__file__).with_name("kwok.yaml")
_CLIENTS_OF_THE_SERVER = ("kube-controller-manager", "kube-scheduler", "kwok")
COMPONENTS = ("etcd", "kube-apiserver", *_CLIENTS_OF_THE_SERVER)
TOOLS = ("coredns", "kubectl", "promtool")  # built beside the planes' components, run by tests
CONTROLLERS = (
    "deployment", "replicaset", "statefulset", "endpoint", "endpointslice",
    "endpointslicemirroring", "garbagecollector", "namespace", "serviceaccount",
)  # fmt: skip
AUDITED = [
    {"group": "", "resources": ["services", "endpoints", "namespaces"]},
    {"group": "discovery.k8s.io", "resources": ["endpointslices"]},
    {"group": "multicluster.x-k8s.io",
     "resources": ["serviceimports", "serviceimports/status", "serviceexports",
                   "serviceexports/status"]},
]  # fmt: skip
# The CRDs scripts/build-binaries caches beside the binaries, by file stem.
MCS_CRDS = ("multicluster.x-k8s.io_serviceexports", "multicluster.x-k8s.io_serviceimports")
PROMETHEUS_RULE_CRD = "monitoring.coreos.com_prometheusrules"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "resources": AUDITED},
        # The group's discovery, which a cluster set pass reads first on every member.
        {"level": "Metadata", "nonResourceURLs": ["/apis/multicluster.x-k8s.io"]},
        {"level": "None"},
    ],
}
# Client certificates by file stem: their subjects. The controller manager acts with its own
# credentials for every controller, so it needs more than its bootstrap role grants.
CLIENTS = {
    "admin": "/O=system:masters/CN=ksm-sync-admin",
    "controller-manager": "/O=system:masters/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
    "kwok": "/O=system:masters/CN=kwok",
}
# Who writes as the plane itself, not as a client of it.
PLANE_USERS = frozenset({"system:kube-controller-manager", "system:kube-scheduler", "kwok"})
# klog's error and fatal lines, etcd's JSON levels, Go panics, cobra's "Error: ...".
_ERROR_LINE = re.compile(r"^[EF]\d{4} |\b(error|fatal|panic)\b", re.IGNORECASE)


class StartError(RuntimeError):
    """A control plane or CoreDNS did not come up; the message says why."""


@dataclass(frozen=True)
class ControlPlane:
    name: str
    dir: Path
    url: str

    @property
    def kubeconfig(self) -> Path:
        return self.dir.parent / f"{self.name}.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    @property
    def service_range(self) -> str:
        return service_range(self.name)

    @property
    def pod_range(self) -> str:
        return pod_range(self.name)

    def admin_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(self.dir / "admin.crt", self.dir / "admin.key")
        return ctx


def plane_names(remotes: int = 1) -> list[str]:
    """`remote`, `remote2`, ... and `local`."""
    if not 1 <= remotes <= MAX_REMOTES:
        raise ValueError(f"remotes must be between 1 and {MAX_REMOTES}, not {remotes}")
    return ["remote", *(f"remote{i}" for i in range(2, remotes + 1)), LOCAL]


def _remote_index(name: str) -> int:
    return int(name.removeprefix("remote") or "1") - 1


def service_range(name: str) -> str:
    """Distinct per plane, so that a mirror's ClusterIP is visibly local. Remotes are
    dual-stack (IPv4 first), so that they can have IPv6-only Services; local is IPv4 only."""
    if name == LOCAL:
        return "10.112.0.0/16"
    index = 96 + _remote_index(name)
    return f"10.{index}.0.0/16,fd00:{index}::/108"


def pod_range(name: str) -> str:
    """Distinct per plane, so that an address says which plane's pod it is."""
    return "10.240.0.0/16" if name == LOCAL else f"10.{244 + _remote_index(name)}.0.0/16"


def binaries() -> dict[str, Path]:
    """The binaries by name (the planes', CoreDNS, kubectl, promtool): those in
    KSM_BINARIES_DIR if set, else built when missing."""
    if given := os.environ.get("KSM_BINARIES_DIR"):
        names = (*COMPONENTS, *TOOLS, *(f"{crd}.yaml" for crd in (*MCS_CRDS, PROMETHEUS_RULE_CRD)))
        return {name: Path(given) / name for name in names}
    out = subprocess.run(
        [str(REPO / "scripts" / "build-binaries")], check=True, stdout=subprocess.PIPE, text=True
    )
    paths = [Path(line) for line in out.stdout.splitlines()]
    return {path.name: path for path in paths}


def up(
    root: Path,
    *,
    remotes: int = 1,
    die_with_parent: bool = False,
    endpointslice_mirroring: bool = True,
    mcs: bool = False,
) -> dict[str, ControlPlane]:
    """Starts the planes under root, all at once (or reuses those running), and waits for them.

    die_with_parent makes the kernel kill the processes when the caller dies, so that a killed
    pytest leaves nothing behind; `scripts/clusters up` leaves them running.
    endpointslice_mirroring=False runs the local plane without the EndpointSliceMirroring
    controller, as a cluster where Endpoints written by ksm-sync never reach EndpointSlices.
    mcs installs the Multi-Cluster Services CRDs in every plane.
    If any plane fails to start, everything this call started is stopped.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    names = plane_names(remotes)
    bins = binaries()
    planes: dict[str, ControlPlane] = {}
    starting = []
    for name in names:
        if (running := _running(root / name)) is not None:
            planes[name] = running
        else:
            mirroring = endpointslice_mirroring or name != LOCAL
            starting.append(_Launch(root / name, bins, die_with_parent, mirroring))
    try:
        for launch in starting:
            launch.prepare()
        _start_servers(starting)
        for launch in starting:
            launch.start_components()
        _wait_all(starting, _Launch.components_ready)
    except BaseException:
        for launch in starting:
            launch.stop()
        raise
    for launch in starting:
        planes[launch.name] = launch.finish()
    if mcs:
        for plane in planes.values():
            install_crds(plane, [bins[f"{crd}.yaml"] for crd in MCS_CRDS])
    return {name: planes[name] for name in names}


def install_crds(plane: ControlPlane, paths: Iterable[Path]) -> None:
    """Applies CRDs as they are written (YAML: the API server reads it in a server-side apply)
    and waits until the API serves them: established, and every version listed (the first
    list of a new resource can answer 429 while its storage initialises)."""
    for path in paths:
        text = path.read_text()
        found = re.search(r"^  name: (\S+)$", text, flags=re.MULTILINE)
        if found is None:
            raise StartError(f"{path}: no metadata.name in this CRD")
        name = found.group(1)
        url = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        _api(plane, "PATCH", f"{url}?fieldManager=ksm-sync-tests&force=true", text.encode(),
             "application/apply-patch+yaml")  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while not _served(plane, _api(plane, "GET", url) or {}):
            if time.monotonic() > deadline:
                raise StartError(f"{plane.name}: CRD {name} not served")
            time.sleep(0.1)


def _served(plane: ControlPlane, crd: dict) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or ()
    if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
        return False
    spec = crd["spec"]
    for version in spec["versions"]:
        path = f"/apis/{spec['group']}/{version['name']}/{spec['names']['plural']}?limit=1"
        try:
            _api(plane, "GET", path)
        except StartError:
            return False
    return True


def down(root: Path) -> None:
    """Stops every process `up` and `dns` started under root and removes it all. Idempotent."""
    root = root.resolve()
    if not root.is_dir():
        return
    dirs = [
        d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"remote\d*|local|dns", d.name)
    ]
    pid_files = [f for d in dirs for f in d.glob("*.pid")]
    _stop_pid_files([f for f in pid_files if f.stem != "etcd"])
    _stop_pid_files([f for f in pid_files if f.stem == "etcd"])
    for d in dirs:
        _remove_tree(d)
    for kubeconfig in root.glob("*.kubeconfig"):
        kubeconfig.unlink()
    with contextlib.suppress(OSError):
        root.rmdir()


def dns(
    root: Path,
    *,
    svc_prefix: str | None = None,
    mirror_ns: str | None = None,
    remote_domain: str | None = None,
    config: Path | None = None,
    plane: str = LOCAL,
    die_with_parent: bool = False,
) -> str:
    """Starts (or restarts) a CoreDNS for a running plane under root (default `local`, the one
    mirrors go to); its HOST:PORT. One at a time per root.

    It serves cluster.local from the local API server, and beside it the remote domain of
    svc_prefix and mirror_ns through the server block `ksm-sync corefile` returns, or every
    block `ksm-sync corefile --config config` prints (the cluster set's included), exactly as
    printed with the admin kubeconfig and a loopback address to reach the plane and be asked.
    """
    root = root.resolve()
    local = _running(root / plane)
    if local is None:
        raise StartError(f"no running `{plane}` plane under {root}: run `up` first")
    dns_dir = root / "dns"
    _stop_pid_files([dns_dir / "coredns.pid"])
    _remove_tree(dns_dir)
    dns_dir.mkdir()
    coredns = binaries()["coredns"]
    kubeconfig = str(local.kubeconfig)
    if config is not None:
        printed = subprocess.run(
            [*_ksm_sync(), "corefile", "--config", str(config), "--kubeconfig", kubeconfig,
             "--bind", "127.0.0.1"], check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    elif svc_prefix and mirror_ns:
        printed = server_block(
            svc_prefix, mirror_ns, remote_domain, bind="127.0.0.1", kubeconfig=kubeconfig
        )
    else:
        raise ValueError("dns needs svc_prefix and mirror_ns, or config")
    corefile = dns_dir / "Corefile"
    corefile.write_text(
        "cluster.local {\n    bind 127.0.0.1\n    errors\n    kubernetes cluster.local {\n"
        f"        kubeconfig {kubeconfig}\n    }}\n}}\n\n" + printed
    )
    log = dns_dir / "coredns.log"
    for attempt in itertools.count(1):
        port = _free_dns_port()  # free for now: another process may take it before CoreDNS does
        argv = [str(coredns), "-conf", str(corefile), "-dns.port", str(port)]
        proc = _spawn(argv, dns_dir / "coredns", die_with_parent)
        deadline = time.monotonic() + READY_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if _dns_answers(port, "kubernetes.default.svc.cluster.local"):
                return f"127.0.0.1:{port}"
            time.sleep(0.1)
        if proc.poll() is None:
            why = f"did not answer within {READY_TIMEOUT:.0f}s\n{_explain(log)}"
            _terminate([proc])
        else:
            why = _why(proc, log)
        if attempt == ATTEMPTS:
            raise StartError(f"coredns {why}")
        print(f"clusters: CoreDNS start failed, trying again:\ncoredns {why}", file=sys.stderr)


@dataclass
class _Launch:
    """One plane being started by this process: its processes, by their handles."""

    dir: Path
    bins: dict[str, Path]
    die_with_parent: bool
    mirroring: bool
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    url: str = ""
    deadline: float = 0.0
    probed: bool = False

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def plane(self) -> ControlPlane:
        return ControlPlane(name=self.name, dir=self.dir, url=self.url)

    def prepare(self) -> None:
        """Stops what an earlier `up` may have left here, then certificates and policy."""
        _stop_pid_files(list(self.dir.glob("*.pid")))
        _remove_tree(self.dir)
        self.dir.mkdir(parents=True)
        _make_certificates(self.dir, self.name)
        (self.dir / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))

    def start_server(self) -> None:
        """etcd and kube-apiserver on fresh free ports."""
        d = self.dir
        _remove_tree(d / "etcd-data")
        client_port, peer_port, secure_port = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn("etcd", [
            f"--name={self.name}",
            f"--data-dir={d / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={self.name}={peer_url}",
            "--unsafe-no-fsync",  # test data: durability is not worth the fsync latency
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ])  # fmt: skip
        self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={secure_port}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={service_range(self.name)}",
            f"--service-account-issuer=https://{self.name}.ksm-sync.test",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            # Admission taints a new Node not-ready until the node lifecycle controller, which
            # does not run here, lifts it: the fake Nodes would never take a pod.
            "--disable-admission-plugins=TaintNodesByCondition",
            f"--audit-policy-file={d / 'audit-policy.json'}",
            f"--audit-log-path={d / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            f"--cert-dir={d / 'cert-dir'}",
            "--enable-priority-and-fairness=false",  # one client per test; no fairness to arbitrate
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            "--v=1",
        ])  # fmt: skip
        self.url = f"https://127.0.0.1:{secure_port}"
        self.deadline = time.monotonic() + READY_TIMEOUT

    def server_ready(self) -> bool:
        self._check_alive()
        if _ready(self.plane):
            return True
        if time.monotonic() > self.deadline:
            log = self.dir / "kube-apiserver.log"
            raise StartError(f"{self.name}: kube-apiserver not ready after "
                             f"{READY_TIMEOUT:.0f}s\n{_explain(log)}")  # fmt: skip
        return False

    def start_components(self) -> None:
        """The controllers, the scheduler and kwok, and the Nodes kwok plays the kubelet of."""
        d = self.dir
        for client in ("controller-manager", "scheduler", "kwok"):
            _write_kubeconfig(d / f"{client}.kubeconfig", self.plane, client)
        controllers = [c for c in CONTROLLERS if self.mirroring or c != "endpointslicemirroring"]
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={d / 'controller-manager.kubeconfig'}",
            f"--controllers={','.join(controllers)}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--secure-port=0",  # nothing scrapes it; no port to collide with other planes
            "--kube-api-qps=100",
            "--kube-api-burst=200",
        ])  # fmt: skip
        self._spawn("kube-scheduler", [
            f"--kubeconfig={d / 'scheduler.kubeconfig'}",
            "--leader-elect=false",
            "--secure-port=0",
        ])  # fmt: skip
        # kwok also reads ~/.kwok/kwok.yaml: not the user's.
        self._spawn("kwok", [
            f"--kubeconfig={d / 'kwok.kubeconfig'}",
            f"--config={KWOK_STAGES}",
            "--manage-all-nodes=true",
            "--node-lease-duration-seconds=0",  # no node lifecycle controller reads leases
        ], env={**os.environ, "HOME": str(d)})  # fmt: skip
        cidrs = ipaddress.ip_network(pod_range(self.name)).subnets(new_prefix=24)
        for i, cidr in enumerate(itertools.islice(cidrs, NODES)):
            node = f"node-{i}"
            _api(self.plane, "POST", "/api/v1/nodes", {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
                "spec": {"podCIDR": str(cidr), "podCIDRs": [str(cidr)]},
            })  # fmt: skip
        self.deadline = time.monotonic() + READY_TIMEOUT

    def components_ready(self) -> bool:
        """A probe pod scheduled, Running and Ready with an IP: the whole chain works."""
        self._check_alive()
        if time.monotonic() > self.deadline:
            raise StartError(f"{self.name}: no pod became Ready within {READY_TIMEOUT:.0f}s\n"
                             + "\n".join(f"-- {c}:\n{_explain(self.dir / f'{c}.log')}"
                                         for c in _CLIENTS_OF_THE_SERVER))  # fmt: skip
        probe = "/api/v1/namespaces/default/pods/ksm-sync-probe"
        if not self.probed:
            # Pods are admitted once the serviceaccount controller made the namespace's account.
            if _api(self.plane, "GET", "/api/v1/namespaces/default/serviceaccounts/default"):
                _api(self.plane, "POST", "/api/v1/namespaces/default/pods", {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "ksm-sync-probe"},
                    "spec": {"containers": [{"name": "probe", "image": "probe"}]},
                })  # fmt: skip
                self.probed = True
            return False
        pod = _api(self.plane, "GET", probe) or {}
        status = pod.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", ()))  # fmt: skip
        if not (ready and status.get("podIP")):
            return False
        _api(self.plane, "DELETE", probe + "?gracePeriodSeconds=0")
        return True

    def finish(self) -> ControlPlane:
        _write_kubeconfig(self.plane.kubeconfig, self.plane, "admin")
        return self.plane

    def stop(self) -> None:
        """Stops every process of this launch: the clients and the API server, then etcd."""
        _terminate([p for name, p in self.procs.items() if name != "etcd"])
        _terminate([p for name, p in self.procs.items() if name == "etcd"])
        for name in self.procs:
            (self.dir / f"{name}.pid").unlink(missing_ok=True)
        self.procs.clear()

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        argv = [str(self.bins[name]), *args]
        self.procs[name] = _spawn(argv, self.dir / name, self.die_with_parent, env)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StartError(f"{self.name}: {name} {_why(proc, self.dir / f'{name}.log')}")


def _start_servers(launches: list[_Launch]) -> None:
    """etcd and kube-apiserver of every plane at once. A plane whose start fails is stopped and
    started again on fresh ports (free ports can be taken between the check and the bind), up to
    ATTEMPTS times in all."""
    attempts = {launch.name: 1 for launch in launches}
    for launch in launches:
        launch.start_server()

    def ready(launch: _Launch) -> bool:
        try:
            return launch.server_ready()
        except StartError as error:
            launch.stop()
            if attempts[launch.name] == ATTEMPTS:
                raise
            attempts[launch.name] += 1
            print(f"clusters: {launch.name}: start failed, trying again:\n{error}", file=sys.stderr)
            launch.start_server()
            return False

    _wait_all(launches, ready)


def _wait_all(launches: list[_Launch], ready: Callable[[_Launch], bool]) -> None:
    waiting = list(launches)
    while waiting:
        waiting = [launch for launch in waiting if not ready(launch)]
        if waiting:
            time.sleep(0.2)


def _spawn(
    argv: list[str], stem: Path, die_with_parent: bool, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts argv with its output in stem.log; stem.pid records it for a later `down`."""
    with stem.with_suffix(".log").open("wb") as log:  # each start explains itself
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=not die_with_parent,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    stem.with_suffix(".pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc


def _ksm_sync() -> list[str]:
    """The ksm-sync CLI: this interpreter's if it has ksm-sync's dependencies (the tests, the
    demo), else the repository's virtual environment's, else the one on PATH."""
    if importlib.util.find_spec("typer") is not None:
        return [sys.executable, "-m", "ksm_sync"]
    beside = REPO / ".venv" / "bin" / "ksm-sync"
    return [str(beside) if beside.exists() else "ksm-sync"]


def _die_with_parent() -> None:
    # The kernel signals the child when the thread that forked it ends: spawn from the main thread.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    os.setpgrp()  # Ctrl-C in the terminal must not reach the servers before teardown does


def _why(proc: subprocess.Popen[bytes], log: Path) -> str:
    """How a process ended and the lines of its log that explain it."""
    code = proc.returncode
    how = (
        f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    )
    return f"{how}\n{_explain(log)}"


def _explain(log: Path, lines: int = 20) -> str:
    """The lines that say why: errors first, else the last lines; never the flag dump."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    text = [line for line in text if "FLAG: " not in line]
    errors = [line for line in text if _ERROR_LINE.search(line)]
    return "\n".join((errors or text)[-lines:]) or "(empty log)"


def _terminate(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, and SIGKILL for whatever still runs STOP_TIMEOUT later; reaps them all."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot: with its pid, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may hold spaces


def _ours(pid_file: Path) -> int | None:
    """The pid in pid_file if that very process still runs: the same start time or, for the pid
    file of an `up` older than start times in pid files, its plane's directory in its arguments."""
    try:
        pid_text, *started = pid_file.read_text().split()
        pid = int(pid_text)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    legacy = str(pid_file.parent).encode() in cmdline
    if state == "Z" or not (_start_time(pid) == started[0] if started else legacy):
        _reap(pid)
        return None
    return pid


def _stop_pid_files(pid_files: list[Path]) -> None:
    """Stops processes known only by pid files (started by another process): SIGTERM, then
    SIGKILL after STOP_TIMEOUT. Removes the pid files."""
    pids = {f: pid for f in pid_files if (pid := _ours(f)) is not None}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for f in pids:
            if _ours(f):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pids[f], sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_ours(f) for f in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    for f in pid_files:
        f.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collects the exit status if pid is a child of this process, so it does not linger."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _ready(plane: ControlPlane) -> bool:
    try:
        ctx = plane.admin_ssl_context()
        with urllib.request.urlopen(f"{plane.url}/readyz", context=ctx, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _api(
    plane: ControlPlane,
    method: str,
    path: str,
    body: dict | bytes | None = None,
    content_type: str = "application/json",
) -> dict | None:
    """A request as the admin; None for 404."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(plane.url + path, data, method=method,
                                     headers={"Content-Type": content_type})  # fmt: skip
    try:
        with urllib.request.urlopen(request, context=plane.admin_ssl_context(), timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        detail = error.read()[:300].decode(errors="replace")
        raise StartError(f"{plane.name}: {method} {path}: {error.code} {detail}") from None


def _running(plane_dir: Path) -> ControlPlane | None:
    kubeconfig = plane_dir.parent / f"{plane_dir.name}.kubeconfig"
    if not kubeconfig.exists():
        return None
    if any(_ours(plane_dir / f"{name}.pid") is None for name in COMPONENTS):
        return None
    url = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    plane = ControlPlane(name=plane_dir.name, dir=plane_dir, url=url)
    return plane if _ready(plane) else None


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    subprocess.run(["rm", "-rf", str(path)], check=True)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _free_dns_port() -> int:
    """A loopback port free for both TCP and UDP, as CoreDNS listens on both."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _dns_answers(port: int, name: str) -> bool:
    """Whether 127.0.0.1:port answers an A query for name with a record (RFC 1035, by hand)."""
    ident = 0x6B73
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    query = (
        struct.pack(">6H", ident, 0x0100, 1, 0, 0, 0) + question + b"\0" + struct.pack(">2H", 1, 1)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))  # connected: a closed port is refused at once
            s.send(query)
            reply = s.recv(512)
        except OSError:
            return False
    answer_id, flags, _, answers = struct.unpack(">4H", reply[:8])
    return answer_id == ident and flags & 0xF == 0 and answers > 0


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certificates(d: Path, name: str) -> None:
    """A CA per plane, a serving certificate for 127.0.0.1, client certificates, an SA key."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-subj", f"/CN=ksm-sync-{name}-ca", cwd=d)  # fmt: skip
    leaves = {
        "apiserver": ("/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                      "extendedKeyUsage=serverAuth\n"),
        **{client: (subject, "extendedKeyUsage=clientAuth\n")
           for client, subject in CLIENTS.items()},
    }  # fmt: skip
    for leaf, (subject, extensions) in leaves.items():
        (d / f"{leaf}.ext").write_text(extensions)
        _openssl("req", *ec, "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr", "-subj", subject,
                 cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "3650", "-extfile", f"{leaf}.ext",
                 "-out", f"{leaf}.crt", cwd=d)  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=d)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(path: Path, plane: ControlPlane, client: str) -> None:
    d = plane.dir
    user = f"{plane.name}-{client}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": plane.name,
                "cluster": {"server": plane.url, "certificate-authority-data": _b64(d / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(d / f"{client}.crt"),
                    "client-key-data": _b64(d / f"{client}.key"),
                },
            }
        ],
        "contexts": [{"name": plane.name, "context": {"cluster": plane.name, "user": user}}],
        "current-context": plane.name,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/clusters", description="Local control planes for ksm-sync's tests and demo."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start `remote`..., `local`; print kubeconfigs")
    up_parser.add_argument("dir", type=Path)
    up_parser.add_argument("--remotes", type=int, default=1, help="remote planes (default 1)")
    up_parser.add_argument(
        "--no-endpointslice-mirroring",
        action="store_true",
        help="run the local plane without the EndpointSliceMirroring controller",
    )
    up_parser.add_argument(
        "--mcs", action="store_true", help="install the Multi-Cluster Services CRDs in every plane"
    )
    down_parser = commands.add_parser("down", help="stop everything started under DIR, remove it")
    down_parser.add_argument("dir", type=Path)
    dns_parser = commands.add_parser(
        "dns", help="(re)start a CoreDNS for the local plane; prints HOST:PORT last"
    )
    dns_parser.add_argument("dir", type=Path)
    dns_parser.add_argument("--svc-prefix", help="with --mirror-ns, unless --config")
    dns_parser.add_argument("--mirror-ns")
    dns_parser.add_argument("--remote-domain", help="default: cluster.<svc-prefix>")
    dns_parser.add_argument(
        "--config", type=Path, help="serve what `ksm-sync corefile --config CONFIG` prints"
    )
    args = parser.parse_args(argv)
    if args.command == "down":
        down(args.dir)
        print(f"clusters: stopped and removed {args.dir}")
        return 0
    start = time.monotonic()
    try:
        if args.command == "dns":
            address = dns(args.dir, svc_prefix=args.svc_prefix, mirror_ns=args.mirror_ns,
                          remote_domain=args.remote_domain, config=args.config)  # fmt: skip
            print(f"clusters: CoreDNS ready in {time.monotonic() - start:.1f}s; "
                  f"stopped by: scripts/clusters down {args.dir}")  # fmt: skip
            print(address)
            return 0
        planes = up(args.dir, remotes=args.remotes,
                    endpointslice_mirroring=not args.no_endpointslice_mirroring,
                    mcs=args.mcs)  # fmt: skip
    except (StartError, ValueError, subprocess.CalledProcessError) as error:
        print(f"clusters: start failed: {error}", file=sys.stderr)
        return 1
    for plane in planes.values():
        print(f"{plane.name}: {plane.url}  KUBECONFIG={plane.kubeconfig}")
    elapsed = time.monotonic() - start
    print(f"clusters: ready in {elapsed:.1f}s; stop with: scripts/clusters down {args.dir}")
    return 0
