"""The control planes themselves: real API servers that allocate, default and keep apart, with the
controllers, a scheduler and kwok, so that workloads get pods and the pods Endpoints."""

from __future__ import annotations

import functools
import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import workloads
from tests.support.cli import REPO
from tests.support.cluster import Cluster, HttpError, endpoints, service
from tests.support.resolver import Resolver, addresses
from tests.support.workloads import wait_for

CLUSTERS = [str(REPO / "scripts" / "clusters")]


def test_remote_allocates_a_cluster_ip_and_local_knows_nothing_of_it(
    remote: Cluster, local: Cluster
) -> None:
    ns = remote.create_namespace("cp")
    ports = [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090, "targetPort": 9091}]
    remote.create(service(ns, "api", ports=ports))

    stored = remote.get("Service", ns, "api")
    assert stored["spec"]["clusterIP"].startswith("10.96.")
    assert [p["targetPort"] for p in stored["spec"]["ports"]] == [80, 9091]  # defaulted
    try:
        local.get("Service", ns, "api")
    except HttpError as error:
        assert error.status == 404
    else:
        raise AssertionError("the Service exists in local too")


def test_rbac_is_enforced(remote: Cluster) -> None:
    """Authorization mode RBAC: a ServiceAccount's token can do nothing until granted."""
    ns = remote.create_namespace("rbac")
    remote.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "probe", "namespace": ns},
        }
    )
    probe = remote.as_token(remote.service_account_token(ns, "probe"))
    try:
        probe.request("GET", "/api/v1/services")
    except HttpError as error:
        assert error.status == 403
    else:
        raise AssertionError("an unprivileged token listed Services")


def test_a_deployment_gets_running_pods_whose_endpoints_carry_the_service_labels(
    remote: Cluster,
) -> None:
    """The scheduler places the pods on kwok's Nodes, kwok runs them with IPs from the plane's
    pod range, and the endpoints controllers publish them, Endpoints labelled as the Service."""
    ns = remote.create_namespace("deploy")
    workloads.deployment(remote, ns, "web", 3)
    remote.create(service(ns, "web", labels={"tier": "front"}, selector={"app": "web"}))

    ips = workloads.ready_pods(remote, ns, "web", 3)
    pod_range = ipaddress.ip_network(remote.plane.pod_range)
    assert all(ipaddress.ip_address(ip) in pod_range for ip in ips.values())
    assert len(set(ips.values())) == 3
    assert all(p["spec"]["nodeName"].startswith("node-") for p in workloads.pods(remote, ns, "web"))
    workloads.wait_endpoints(remote, ns, "web", set(ips.values()))
    assert remote.get("Endpoints", ns, "web")["metadata"]["labels"]["tier"] == "front"
    slices = _slices(remote, ns, "web")
    assert {a for s in slices for e in s["endpoints"] for a in e["addresses"]} == set(ips.values())

    remote.request("DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    wait_for(
        "the garbage collector to delete the pods", lambda: not workloads.pods(remote, ns, "web")
    )


def test_statefulset_pods_are_published_under_their_hostnames(remote: Cluster) -> None:
    ns = remote.create_namespace("sts")
    workloads.statefulset(remote, ns, "pg", 2)
    remote.create(service(ns, "pg", clusterIP="None", selector={"app": "pg"}))

    ips = workloads.ready_pods(remote, ns, "pg", 2)
    workloads.wait_endpoints(remote, ns, "pg", set(ips.values()))
    [subset] = remote.get("Endpoints", ns, "pg")["subsets"]
    assert {a["hostname"]: a["ip"] for a in subset["addresses"]} == ips


def test_a_pod_made_not_ready_or_held_terminating_is_published_as_such(remote: Cluster) -> None:
    """The two states tests need that kwok alone would never produce (tests/support/workloads)."""
    ns = remote.create_namespace("states")
    workloads.statefulset(remote, ns, "db", 3)
    remote.create(service(ns, "db", clusterIP="None", selector={"app": "db"}))
    ips = workloads.ready_pods(remote, ns, "db", 3)

    workloads.make_not_ready(remote, ns, "db-1")
    workloads.hold_terminating(remote, ns, "db-2")
    try:
        workloads.wait_endpoints(remote, ns, "db", {ips["db-0"]}, frozenset({ips["db-1"]}))
        found = wait_for(
            "db-2 terminating in the EndpointSlices",
            lambda: (c := _conditions(remote, ns, "db")).get("db-2", {}).get("terminating") and c,
        )
        assert found["db-0"] == {"ready": True, "serving": True, "terminating": False}
        assert found["db-1"] == {"ready": False, "serving": False, "terminating": False}
        assert found["db-2"] == {"ready": False, "serving": True, "terminating": True}
        phases = {
            p["metadata"]["name"]: p["status"]["phase"] for p in workloads.pods(remote, ns, "db")
        }
        assert phases == dict.fromkeys(("db-0", "db-1", "db-2"), "Running")
    finally:
        workloads.release(remote, ns, "db-2")
    wait_for(
        "db-2 replaced by a new, ready pod",
        lambda: _conditions(remote, ns, "db").get("db-2", {}).get("ready"),
    )


def test_endpointslice_mirroring_runs_on_every_plane_as_on_a_real_cluster(
    remote: Cluster, local: Cluster
) -> None:
    """Hand-written Endpoints of a selectorless Service reach slices on remote and on local
    alike: the tests' planes run the controllers a real cluster runs (issue 20)."""
    subsets = [{"addresses": [{"ip": "10.9.0.1"}], "ports": [{"name": "http", "port": 80}]}]
    for cluster in (local, remote):
        ns = cluster.create_namespace("mirroring")
        cluster.create(service(ns, "m"))
        cluster.create(endpoints(ns, "m", subsets))
        wait_for(f"a mirrored EndpointSlice on {cluster.name}",
                 functools.partial(_slices, cluster, ns, "m"))  # fmt: skip


def test_clusters_script_starts_several_at_once_and_a_failed_start_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Three `scripts/clusters up` at once, one of which cannot start: its API servers exit,
    and its etcd ignores SIGTERM, as a server starting up may. It retries, says why it fails,
    and stops what it started; the two others come up, one gets a CoreDNS, and `down` stops
    them all."""
    roots = {name: tmp_path / name for name in ("one", "two", "bad")}
    stubs = _failing_binaries(tmp_path / "stubs")
    args = {"one": [], "two": ["--remotes", "2", "--no-endpointslice-mirroring"], "bad": []}
    env = {"bad": {**os.environ, "KSM_BINARIES_DIR": str(stubs)}}
    try:
        starts = {
            name: subprocess.Popen([*CLUSTERS, "up", root, *args[name]], env=env.get(name),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, root in roots.items()
        }  # fmt: skip
        done = {name: (p.wait(timeout=300), *p.communicate()) for name, p in starts.items()}

        code, _, err = done["bad"]
        assert code == 1, err
        assert err.count("start failed, trying again") >= 2, err
        assert "kube-apiserver exited with status 1" in err and "no API server here" in err, err
        assert not _processes_under(roots["bad"]), err
        for name in ("one", "two"):
            assert done[name][0] == 0, done[name][2]
            assert "ready in" in done[name][1]
        assert {p.name for p in roots["two"].glob("*.kubeconfig")} == {
            "remote.kubeconfig", "remote2.kubeconfig", "local.kubeconfig"}  # fmt: skip
        log = (roots["two"] / "local" / "kube-controller-manager.log").read_text()
        assert '"Warning: controller is disabled" controller="endpointslice-mirroring' in log

        pids = _pids(roots["one"])
        again = subprocess.run([*CLUSTERS, "up", roots["one"]], capture_output=True, text=True,
                               timeout=300)  # fmt: skip
        assert again.returncode == 0 and "ready in" in again.stdout  # idempotent: reuses them
        assert _pids(roots["one"]) == pids
        dns = subprocess.run([*CLUSTERS, "dns", roots["one"], "--svc-prefix", "p", "--mirror-ns",
                              "m"], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert dns.returncode == 0, dns.stderr
        host, port = dns.stdout.splitlines()[-1].rsplit(":", 1)
        answer = Resolver(host, int(port), "cluster.p").ask("kubernetes.default.svc.cluster.local")
        assert addresses(answer), answer

        for root in roots.values():
            down = subprocess.run([*CLUSTERS, "down", root], capture_output=True, text=True,
                                  timeout=120)  # fmt: skip
            assert down.returncode == 0, down.stderr
            assert not root.exists()
        assert not _processes_under(tmp_path)
        assert subprocess.run([*CLUSTERS, "down", roots["one"]], timeout=60).returncode == 0
    finally:
        for root in roots.values():
            subprocess.run([*CLUSTERS, "down", root], capture_output=True, timeout=120)
        for pid in _processes_under(tmp_path):  # whatever a bug left behind, ours by command line
            os.kill(pid, signal.SIGKILL)


def _slices(cluster: Cluster, namespace: str, service_name: str) -> list[dict]:
    selector = f"kubernetes.io/service-name%3D{service_name}"
    path = (
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector={selector}"
    )
    return cluster.request("GET", path)["items"]


def _conditions(cluster: Cluster, namespace: str, service_name: str) -> dict[str, dict]:
    """The conditions of each pod in the Service's EndpointSlices."""
    slices = _slices(cluster, namespace, service_name)
    return {e["targetRef"]["name"]: e["conditions"] for s in slices for e in s["endpoints"] or ()}


def _failing_binaries(stubs: Path) -> Path:
    """The real binaries, but a kube-apiserver that exits at once with an error, and an etcd
    that ignores SIGTERM."""
    stubs.mkdir()
    real = subprocess.run([REPO / "scripts" / "build-binaries"], check=True,
                          capture_output=True, text=True).stdout.split()  # fmt: skip
    for path in map(Path, real):
        (stubs / path.name).symlink_to(path)
    scripts = {
        "kube-apiserver": 'import sys\nprint("E0101 00:00:00.000000 1 stub] no API server here")\n'
                          "sys.exit(1)\n",
        "etcd": "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "time.sleep(600)\n",
    }  # fmt: skip
    for name, body in scripts.items():
        (stubs / name).unlink()
        (stubs / name).write_text(f"#!{sys.executable}\n{body}")
        (stubs / name).chmod(0o755)
    return stubs


def _pids(root: Path) -> list[str]:
    return sorted(f.read_text() for f in root.glob("*/*.pid"))


def _processes_under(path: Path) -> list[int]:
    """Processes whose command line names something under path (every one `up` starts does)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path).encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found
