"""Ways a deployment could lose mirrors, hang, die or leak a credential (issue 12), each pinned
through the real CLI against real control planes, with a fault proxy where a fault is needed."""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.cli import start_cli
from tests.support.cluster import Json, endpoints
from tests.support.faultproxy import FaultProxy, Request, through
from tests.support.loop import LoopRun
from tests.support.observability import free_port
from tests.support.world import World

SUBSETS = [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 80}]}]


def summary(stderr: str) -> dict[str, int]:
    [line] = [line for line in stderr.splitlines() if "pass done:" in line]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line)}


def test_endpoints_that_stop_matching_are_deletes_for_the_policies_and_the_guard(
    world: World,
) -> None:
    """A remote that stops maintaining Endpoints must not empty every mirror in one pass."""
    names = [f"s{i}" for i in range(8)]
    for name in names:
        world.service(name)
        world.endpoints(name, SUBSETS)
    assert world.run().returncode == 0
    for name in names:  # the remote Endpoints no longer match the selector
        world.remote.apply(endpoints(world.remote_ns, name, SUBSETS, labels={"other": "x"}))
    writes = len(world.writes())

    upsert_only = world.run("--policy", "upsert-only")
    no_svc_sync = world.run("--no-svc-sync")
    guarded = world.run()

    assert upsert_only.returncode == 0 and summary(upsert_only.stderr)["held"] == 8
    assert no_svc_sync.returncode == 0 and summary(no_svc_sync.stderr)["held"] == 8
    assert guarded.returncode == 1, guarded.stderr
    assert "would delete 8 of 8 mirrors (8 of them by deleting their endpoints)" in guarded.stderr
    assert len(world.writes()) == writes
    assert set(world.mirrors("Endpoints")) == {world.mirror_name(n) for n in names}
    allowed = world.run("--max-delete-ratio", "1")
    assert allowed.returncode == 0 and world.mirrors("Endpoints") == {}


def test_no_request_starts_after_the_pass_timeout(world: World, tmp_path: Path) -> None:
    """A hung local server, a 1 s deadline, 64 creates: the pass ends on time."""
    for i in range(64):
        world.service(f"s{i:02d}")
    with FaultProxy(world.local.plane, seed=3) as proxy:
        proxy.rate, proxy.faults, proxy.stall_seconds = 1.0, ("stall",), 30
        proxy.match = lambda request: request.method != "GET"  # every write hangs
        args = through(world, tmp_path, local=proxy)
        hung = world.run(*args, "--pass-timeout", "1s", "--request-timeout", "1s",
                         "--concurrency", "4", defaults=False)  # fmt: skip
        [first, *rest] = proxy.requests()
        late = [r for r in rest if r.at > first.at + 1.0 + 0.3]  # the deadline, and scheduling
        counts = summary(hung.stderr)
        duration = float(re.search(r"duration=([\d.]+)s", hung.stderr).group(1))
        print(f"\nhung local: pass {duration:.2f}s, {len(proxy.requests('create'))} creates sent, "
              f"{counts.get('abandoned', 0)} abandoned")  # fmt: skip
        assert late == [], [(r.method, r.path, round(r.at - first.at, 2)) for r in late]
        assert hung.returncode == 1, hung.stderr
        assert duration <= 1 + 1 + 0.5  # the timeout, plus one request timeout
        assert counts["abandoned"] + counts["failed"] == 64 and counts["abandoned"] >= 56
        assert "not sent: the pass reached its --pass-timeout" in hung.stderr
        proxy.rate = 0.0
        healed = world.run(*args, defaults=False)
    assert healed.returncode == 0 and len(world.mirrors()) == 64


def test_a_kubeconfig_caught_mid_rewrite_fails_passes_not_the_loop(
    world: World, tmp_path: Path
) -> None:
    world.service("web")
    kubeconfig = tmp_path / "local.kubeconfig"
    good = world.local.plane.kubeconfig.read_text()
    kubeconfig.write_text(good)
    args = world.args()
    args[args.index("--kube-config") + 1] = str(kubeconfig)
    run = LoopRun([*args, "--resync-period", "200ms"])
    try:
        run.wait_passes(1, 60)
        kubeconfig.write_text("apiVersion: v1\nclusters: [\n")  # half written
        run.wait_for(lambda: sum(not p.ran for p in run.snapshot()) >= 2, 30, "2 failed passes")
        kubeconfig.write_text(good)
        world.service("api")
        run.wait_for(lambda: world.mirror_name("api") in world.mirrors(), 30, "recovery")
    finally:
        assert run.stop() == 0, run.tail()
    failed = [p.message for p in run.snapshot() if not p.ran]
    assert all(f"kubeconfig {kubeconfig}: cannot be read" in m for m in failed), failed


def test_a_body_that_is_not_a_json_object_fails_the_pass_not_the_loop(
    world: World, tmp_path: Path
) -> None:
    world.service("web")
    with FaultProxy(world.remote.plane, seed=4) as proxy:
        proxy.plan = lambda request: "not-object" if request.verb == "list" else None
        args = through(world, tmp_path, remote=proxy)
        once = world.run(*args, defaults=False)
        assert once.returncode == 3, once.stderr
        assert "response body is JSON but not an object (list)" in once.stderr
        run = LoopRun([*args, "--resync-period", "200ms"])
        try:
            run.wait_for(lambda: sum(not p.ran for p in run.snapshot()) >= 2, 30, "failed passes")
            proxy.plan = None
            run.wait_for(lambda: world.mirror_name("web") in world.mirrors(), 30, "recovery")
        finally:
            assert run.stop() == 0, run.tail()


def test_unreadable_credentials_at_start_up_are_bad_input(world: World, tmp_path: Path) -> None:
    config = json.loads(world.local.plane.kubeconfig.read_text())
    config["users"][0]["user"]["client-key-data"] = "not base64!"
    bad_base64 = tmp_path / "bad.kubeconfig"
    bad_base64.write_text(json.dumps(config))
    args = world.args()
    args[args.index("--kube-config") + 1] = str(bad_base64)
    result = world.run(*args, defaults=False)
    assert result.returncode == 2, result.stderr
    assert f"kubeconfig {bad_base64}: cannot be read" in result.stderr
    assert "Traceback" not in result.stderr

    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe not text")
    token_mode = world.run(*_token_args(world, f"https://127.0.0.1:{free_port()}", token,
                                        world.remote.plane.ca_file), defaults=False)  # fmt: skip
    assert token_mode.returncode == 2, token_mode.stderr
    assert f"--remote-sa-token-path {token}: the token file is not text" in token_mode.stderr


def _token_args(world: World, api_url: str, token: Path, ca: Path | str) -> list[str]:
    return [
        "--remote-api-url", api_url, "--remote-sa-token-path", str(token),
        "--remote-ca-url", str(ca), "--kube-config", world.local.kubeconfig,
        "--mirror-ns", world.mirror_ns, "--label-selector", world.selector,
        "--svc-prefix", world.prefix,
    ]  # fmt: skip


def test_a_bearer_token_never_travels_in_clear(world: World, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(secrets.token_urlsafe(24))
    ca = world.remote.plane.ca_file
    clear = world.run(*_token_args(world, "http://remote.example:6443", token, ca), defaults=False)
    assert clear.returncode == 2, clear.stderr
    assert "must be https://" in clear.stderr and "would travel in clear" in clear.stderr

    loopback = f"http://127.0.0.1:{free_port()}"  # kubectl proxy's way: allowed
    proxied = world.run(*_token_args(world, loopback, token, ca), defaults=False)
    assert proxied.returncode == 3, proxied.stderr  # allowed, and nothing listens there

    http_ca = world.run(*_token_args(world, world.remote.plane.url, token,
                                     "http://127.0.0.1:9/ca.crt"), defaults=False)  # fmt: skip
    assert http_ca.returncode == 2, http_ca.stderr
    assert "--insecure-ca-over-http" in http_ca.stderr
    assert world.writes() == []


def test_a_kubeconfig_that_skips_tls_verification_is_warned_about_every_pass(
    world: World, tmp_path: Path
) -> None:
    world.service("web")
    config = json.loads(world.remote.plane.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["insecure-skip-tls-verify"] = True
    insecure = tmp_path / "insecure.kubeconfig"
    insecure.write_text(json.dumps(config))
    args = world.args()
    args[args.index("--target-kube-config") + 1] = str(insecure)
    run = LoopRun([*args, "--resync-period", "200ms"])
    try:
        run.wait_passes(3, 60)
    finally:
        assert run.stop() == 0, run.tail()
    warnings = [m for m in run.messages("warning") if "insecure-skip-tls-verify" in m]
    assert len(warnings) >= len(run.snapshot()) >= 3
    assert f"the remote kubeconfig {insecure} sets insecure-skip-tls-verify" in warnings[0]


def test_a_mirror_taken_over_before_its_delete_is_left_alone(world: World, tmp_path: Path) -> None:
    world.service("web")
    world.endpoints("web", SUBSETS)
    assert world.run().returncode == 0
    world.remote.delete("Service", world.remote_ns, "web")
    name = world.mirror_name("web")

    def take_over(request: Request) -> None:
        """Just before ksm-sync's delete reaches the server, someone removes its labels."""
        if request.method == "DELETE" and request.path.endswith(f"/services/{name}"):
            patch = {"metadata": {"labels": None, "annotations": {"owner": "someone"}}}
            path = f"/api/v1/namespaces/{world.mirror_ns}/services/{name}"
            world.local.request("PATCH", path, patch, "application/merge-patch+json")
        return None

    with FaultProxy(world.local.plane, seed=5) as proxy:
        proxy.plan = take_over
        result = world.run(*through(world, tmp_path, local=proxy), defaults=False)

    assert result.returncode == 1, result.stderr
    assert "no longer ours since observed; left untouched" in result.stderr
    kept = world.local.get("Service", world.mirror_ns, name)
    assert kept["metadata"]["annotations"]["owner"] == "someone"


def test_two_remotes_with_one_mirror_name_overwrite_neither(world: World) -> None:
    """The one whose name holds the separator is mirrored first (a namespace holding it never
    is: DNS answers would read its mirror name as another Service's, issue 20)."""
    tag = secrets.token_hex(2)
    first_ns, second_ns = f"y{tag}", f"x{tag}-6d6972726f720a-y{tag}"
    for ns in (first_ns, second_ns):
        world.remote.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    world.service(f"c-6d6972726f720a-x{tag}", namespace=first_ns)
    assert world.run().returncode == 0
    name = world.mirror_name(f"c-6d6972726f720a-x{tag}", first_ns)
    before = world.mirrors()[name]["metadata"]["resourceVersion"]
    world.service("c", namespace=second_ns)
    assert world.mirror_name("c", second_ns) == name

    result = world.run()

    assert result.returncode == 1, result.stderr
    assert summary(result.stderr)["skipped"] == 2
    assert result.stderr.count("is also the mirror name of") == 2
    assert world.mirrors()[name]["metadata"]["resourceVersion"] == before
    assert world.mirrors()[name]["metadata"]["annotations"]["ksm-sync/remote-namespace"] == first_ns


def test_session_affinity_and_ip_family_policy_are_mirrored(world: World) -> None:
    affinity = {"sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}  # fmt: skip
    world.service("sticky", **affinity)
    world.service("dual", ipFamilyPolicy="PreferDualStack")  # single-stack remote: IPv4 only
    assert world.run().returncode == 0
    sticky = world.mirrors()[world.mirror_name("sticky")]["spec"]
    assert sticky["sessionAffinity"] == "ClientIP"
    assert sticky["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
    assert world.mirrors()[world.mirror_name("dual")]["spec"]["ipFamilyPolicy"] == "PreferDualStack"
    writes = len(world.writes())
    assert world.run().returncode == 0 and len(world.writes()) == writes

    world.service("sticky", sessionAffinity="None")
    assert world.run().returncode == 0
    spec = world.mirrors()[world.mirror_name("sticky")]["spec"]
    assert spec["sessionAffinity"] == "None" and "sessionAffinityConfig" not in spec
    writes = len(world.writes())
    assert world.run().returncode == 0 and len(world.writes()) == writes


def test_odd_endpoints_are_stored_as_written_and_never_rewritten(world: World) -> None:
    """One IP for two pods (hostNetwork), one IP ready and not ready, a kindless targetRef."""
    world.service("web")
    subsets: list[Json] = [
        {"addresses": [
            {"ip": "10.2.0.1", "targetRef": {"kind": "Pod", "name": "a", "uid": "uid-a"}},
            {"ip": "10.2.0.1", "targetRef": {"kind": "Pod", "name": "b", "uid": "uid-b"}},
            {"ip": "10.2.0.2"},
            {"ip": "10.2.0.3", "targetRef": {"name": "no-kind"}},
         ],
         "notReadyAddresses": [{"ip": "10.2.0.2"}],
         "ports": [{"name": "http", "port": 80}]},
    ]  # fmt: skip
    world.endpoints("web", subsets)
    stored = world.remote.get("Endpoints", world.remote_ns, "web")["subsets"]
    assert [a["ip"] for a in stored[0]["addresses"]].count("10.2.0.1") == 2  # stored as written
    assert world.run().returncode == 0
    writes = len(world.writes())

    second = world.run()

    assert second.returncode == 0 and len(world.writes()) == writes, second.stderr
    [mirror] = world.local.get("Endpoints", world.mirror_ns, world.mirror_name("web"))["subsets"]
    assert [a["ip"] for a in mirror["addresses"]] == ["10.2.0.1", "10.2.0.3"]
    assert [a["ip"] for a in mirror["notReadyAddresses"]] == ["10.2.0.2"]


@contextmanager
def _once_stalled_on_the_remote(
    world: World, tmp_path: Path, request_timeout: str
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`once` with its own TMPDIR, hanging in its first remote list (a stalled remote)."""
    world.service("web")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with FaultProxy(world.remote.plane, seed=6) as proxy:
        proxy.rate, proxy.faults, proxy.stall_seconds = 1.0, ("stall",), 60
        args = through(world, tmp_path, remote=proxy)
        env = {"TMPDIR": str(tmpdir)}
        process = start_cli(["once", *args, "--request-timeout", request_timeout], env=env)
        deadline = time.monotonic() + 60
        while not proxy.requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.requests(), "the pass never reached the remote"
        yield process, tmpdir


def test_sigterm_leaves_no_credential_files_behind(world: World, tmp_path: Path) -> None:
    """The client writes the kubeconfig's key to a file; SIGTERM mid-pass must not leave it."""
    with _once_stalled_on_the_remote(world, tmp_path, "2s") as (process, tmpdir):
        assert any(tmpdir.rglob("*")), "the client wrote no credential files to look for"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    stopped = time.monotonic() - started
    print(f"\nonce stopped {stopped:.1f}s after SIGTERM, exit {process.returncode}")
    assert stopped < 2 + 3  # the request in flight, then no retry
    assert "SIGTERM received" in stderr
    assert list(tmpdir.rglob("*")) == [], stderr
    assert world.mirrors() == {}


def test_a_second_sigterm_stops_at_once_and_cleans_up(world: World, tmp_path: Path) -> None:
    with _once_stalled_on_the_remote(world, tmp_path, "30s") as (process, tmpdir):
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "received again: stopping now" in stderr
    assert list(tmpdir.rglob("*")) == [], stderr


def test_a_remote_of_a_family_the_local_cluster_has_not_is_skipped_and_named(world: World) -> None:
    """An IPv6-only remote (the remote plane is dual-stack) into an IPv4-only local cluster:
    an IPv4 cluster IP would have no backends, so the mirror is skipped with that reason."""
    world.service("v6", ipFamilyPolicy="SingleStack", ipFamilies=["IPv6"])
    world.endpoints("v6", [{"addresses": [{"ip": "fd00:10::7"}], "ports": [{"port": 80}]}])
    world.service("v4")
    v6 = world.remote.get("Service", world.remote_ns, "v6")["spec"]
    assert v6["ipFamilies"] == ["IPv6"] and ":" in v6["clusterIP"]

    result = world.run()

    assert result.returncode == 1, result.stderr
    assert summary(result.stderr)["skipped"] == 1 and summary(result.stderr)["created"] == 1
    assert "the local cluster cannot give it the remote's IP family" in result.stderr
    assert set(world.mirrors()) == {world.mirror_name("v4")}
    assert world.mirror_name("v6") not in world.mirrors("Endpoints")  # not without its Service
