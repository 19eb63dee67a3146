"""Local Kubernetes control planes (etcd + kube-apiserver, no kubelet), as envtest runs them.

Standard library only, so that `scripts/clusters` runs before any virtual environment
exists. The pytest fixtures, the demo and the benchmark all start their clusters here.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NAMES = ("remote", "local")
READY_TIMEOUT = 90.0
# Distinct service ranges make a mirror's ClusterIP visibly local.
SERVICE_RANGES = {"remote": "10.96.0.0/16", "local": "10.112.0.0/16"}
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "resources": [{"group": "", "resources": ["services", "endpoints"]}]},
        {"level": "None"},
    ],
}


class StartError(RuntimeError):
    """A control plane did not come up; the message carries the log tail."""


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

    def admin_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(self.dir / "admin.crt", self.dir / "admin.key")
        return ctx


def binaries() -> Path:
    """Builds the binaries when missing and returns their directory."""
    out = subprocess.run(
        [str(REPO / "scripts" / "build-binaries")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def up(root: Path, *, die_with_parent: bool = False) -> dict[str, ControlPlane]:
    """Starts `remote` and `local` under root (or reuses them if running) and waits for /readyz.

    die_with_parent makes the kernel kill the processes when the caller dies, so that a
    killed pytest leaves nothing behind; `scripts/clusters up` leaves them running.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    bin_dir = binaries()
    planes = {}
    for name in NAMES:
        planes[name] = _up_one(root, name, bin_dir, die_with_parent)
    return planes


def down(root: Path) -> None:
    """Stops every process `up` started under root and removes its data. Idempotent."""
    root = root.resolve()
    for name in NAMES:
        plane_dir = root / name
        for proc in ("kube-apiserver", "etcd"):
            _stop(plane_dir / f"{proc}.pid", plane_dir)
        _remove_tree(plane_dir)
        (root / f"{name}.kubeconfig").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()


def _up_one(root: Path, name: str, bin_dir: Path, die_with_parent: bool) -> ControlPlane:
    plane_dir = root / name
    running = _running(plane_dir)
    if running is not None:
        return running
    _stop(plane_dir / "kube-apiserver.pid", plane_dir)
    _stop(plane_dir / "etcd.pid", plane_dir)
    _remove_tree(plane_dir)
    plane_dir.mkdir(parents=True)
    _make_certificates(plane_dir, name)
    (plane_dir / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
    last_error: StartError | None = None
    for _ in range(3):
        # Free ports can be taken between the check and the bind, and a loaded machine can
        # make a first start fail in ways whose log does not say so: start again, fresh.
        try:
            plane = _start(plane_dir, name, bin_dir, die_with_parent)
        except StartError as error:
            last_error = error
            print(f"clusters: {name}: start failed, trying again:\n{error}", file=sys.stderr)
            continue
        _write_kubeconfig(plane)
        return plane
    assert last_error is not None
    raise last_error


def _start(plane_dir: Path, name: str, bin_dir: Path, die_with_parent: bool) -> ControlPlane:
    _stop(plane_dir / "kube-apiserver.pid", plane_dir)
    _stop(plane_dir / "etcd.pid", plane_dir)
    _remove_tree(plane_dir / "etcd-data")
    client_port, peer_port, secure_port = _free_ports(3)
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd = [
        str(bin_dir / "etcd"),
        f"--name={name}",
        f"--data-dir={plane_dir / 'etcd-data'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={name}={peer_url}",
        "--unsafe-no-fsync",  # test data: durability is not worth the fsync latency
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ]
    _spawn(etcd, plane_dir / "etcd", die_with_parent)
    d = plane_dir
    apiserver = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={secure_port}",
        f"--tls-cert-file={d / 'apiserver.crt'}",
        f"--tls-private-key-file={d / 'apiserver.key'}",
        f"--client-ca-file={d / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_RANGES[name]}",
        f"--service-account-issuer=https://{name}.ksm-sync.test",
        f"--service-account-key-file={d / 'sa.pub'}",
        f"--service-account-signing-key-file={d / 'sa.key'}",
        f"--audit-policy-file={d / 'audit-policy.json'}",
        f"--audit-log-path={d / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
        f"--cert-dir={d / 'cert-dir'}",
        "--enable-priority-and-fairness=false",  # one client per test; no fairness to arbitrate
        "--max-requests-inflight=1000",
        "--max-mutating-requests-inflight=500",
        "--v=1",
    ]
    _spawn(apiserver, plane_dir / "kube-apiserver", die_with_parent)
    plane = ControlPlane(name=name, dir=plane_dir, url=f"https://127.0.0.1:{secure_port}")
    _wait_ready(plane)
    return plane


def _spawn(argv: list[str], stem: Path, die_with_parent: bool) -> None:
    log = stem.with_suffix(".log").open("ab")
    preexec = _die_with_parent if die_with_parent else None
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=not die_with_parent,
        preexec_fn=preexec,
    )
    log.close()
    stem.with_suffix(".pid").write_text(str(proc.pid))


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    os.setpgrp()  # Ctrl-C in the terminal must not reach the servers before teardown does


def _wait_ready(plane: ControlPlane) -> None:
    ctx = plane.admin_ssl_context()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for proc in ("etcd", "kube-apiserver"):
            if _alive_pid(plane.dir / f"{proc}.pid", plane.dir) is None:
                raise StartError(f"{plane.name}: {proc} exited\n{_log_tail(plane.dir / proc)}")
        if _ready(plane, ctx):
            return
        time.sleep(0.2)
    raise StartError(
        f"{plane.name}: kube-apiserver not ready after {READY_TIMEOUT:.0f}s\n"
        f"{_log_tail(plane.dir / 'kube-apiserver')}"
    )


def _ready(plane: ControlPlane, ctx: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(f"{plane.url}/readyz", context=ctx, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _running(plane_dir: Path) -> ControlPlane | None:
    kubeconfig = plane_dir.parent / f"{plane_dir.name}.kubeconfig"
    if not kubeconfig.exists():
        return None
    if _alive_pid(plane_dir / "etcd.pid", plane_dir) is None:
        return None
    if _alive_pid(plane_dir / "kube-apiserver.pid", plane_dir) is None:
        return None
    url = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    plane = ControlPlane(name=plane_dir.name, dir=plane_dir, url=url)
    return plane if _ready(plane, plane.admin_ssl_context()) else None


def _log_tail(stem: Path, lines: int = 30) -> str:
    try:
        text = stem.with_suffix(".log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _alive_pid(pid_file: Path, owner_dir: Path) -> int | None:
    """The pid in pid_file if that process is alive and was started for owner_dir."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, ValueError):
        return None
    if "State:\tZ" in status or str(owner_dir).encode() not in cmdline:
        return None  # gone, or the pid was reused by something that is not ours
    return pid


def _stop(pid_file: Path, owner_dir: Path) -> None:
    pid = _alive_pid(pid_file, owner_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive_pid(pid_file, owner_dir) is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _alive_pid(pid_file, owner_dir) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        _reap(pid)
    pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


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


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certificates(d: Path, name: str) -> None:
    """A CA per plane, a serving certificate for 127.0.0.1, an admin client, an SA key."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-subj", f"/CN=ksm-sync-{name}-ca", cwd=d)  # fmt: skip
    leaves = {
        "apiserver": ("/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                      "extendedKeyUsage=serverAuth\n"),
        "admin": ("/O=system:masters/CN=ksm-sync-admin", "extendedKeyUsage=clientAuth\n"),
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


def _write_kubeconfig(plane: ControlPlane) -> None:
    d = plane.dir
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
                "name": f"{plane.name}-admin",
                "user": {
                    "client-certificate-data": _b64(d / "admin.crt"),
                    "client-key-data": _b64(d / "admin.key"),
                },
            }
        ],
        "contexts": [
            {"name": plane.name, "context": {"cluster": plane.name, "user": f"{plane.name}-admin"}}
        ],
        "current-context": plane.name,
    }
    plane.kubeconfig.write_text(json.dumps(config, indent=2))
    plane.kubeconfig.chmod(0o600)


def main(argv: list[str]) -> int:
    usage = "usage: scripts/clusters up DIR | down DIR"
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(usage, file=sys.stderr)
        return 2
    command, root = argv[0], Path(argv[1])
    if command == "down":
        down(root)
        print(f"clusters: stopped and removed {root}")
        return 0
    start = time.monotonic()
    try:
        planes = up(root)
    except (StartError, subprocess.CalledProcessError) as error:
        print(f"clusters: start failed: {error}", file=sys.stderr)
        return 1
    for plane in planes.values():
        print(f"{plane.name}: {plane.url}  KUBECONFIG={plane.kubeconfig}")
    elapsed = time.monotonic() - start
    print(f"clusters: ready in {elapsed:.1f}s; stop with: scripts/clusters down {root}")
    return 0
