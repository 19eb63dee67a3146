"""The mirror pass, through the real CLI, against real control planes."""

from __future__ import annotations

import signal
import time

from tests.support.cli import start_cli
from tests.support.cluster import endpoints, service
from tests.support.world import World

SUBSETS = [
    {
        "addresses": [
            {"ip": "10.1.0.1", "hostname": "web-0", "targetRef": {"kind": "Pod", "name": "web-0"}},
            {"ip": "10.1.0.2", "hostname": "web-1", "targetRef": {"kind": "Pod", "name": "web-1"}},
        ],
        "notReadyAddresses": [{"ip": "10.1.0.3", "targetRef": {"kind": "Pod", "name": "web-2"}}],
        "ports": [
            {"name": "http", "port": 8080},
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
        ],
    }
]


def ports_of(obj: dict) -> list[tuple]:
    return sorted(
        (p.get("name"), p["port"], p["protocol"], p.get("nodePort")) for p in obj["spec"]["ports"]
    )


def test_every_service_type_is_mirrored_with_the_right_spec(world: World) -> None:
    ports = [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]
    world.service("plain", ports=ports)
    world.service("headless", ports=ports, clusterIP="None")
    world.service("np", ports=ports, type="NodePort")
    world.service("lb", ports=ports, type="LoadBalancer")
    other_ns = world.remote.create_namespace("remote")
    world.service("plain", namespace=other_ns, ports=ports)

    result = world.run()

    assert result.returncode == 0, result.stderr
    mirrors = world.mirrors()
    expected = {world.mirror_name(n) for n in ("plain", "headless", "np", "lb")}
    assert set(mirrors) == expected | {world.mirror_name("plain", other_ns)}
    for name, mirror in mirrors.items():
        spec = mirror["spec"]
        assert spec["type"] == "ClusterIP" and "selector" not in spec
        assert ports_of(mirror) == [("dns", 53, "UDP", None), ("http", 80, "TCP", None)]
        assert (spec["clusterIP"] == "None") == (name == world.mirror_name("headless"))
        if spec["clusterIP"] != "None":
            assert spec["clusterIP"].startswith("10.112.")  # allocated by the local cluster
        assert mirror["metadata"]["labels"] == {
            "mirrored-svc": "true",
            "mirror-svc-prefix-sync": world.prefix,
        }
    annotations = mirrors[world.mirror_name("plain", other_ns)]["metadata"]["annotations"]
    assert annotations == {"ksm-sync/remote-namespace": other_ns, "ksm-sync/remote-name": "plain"}
    assert "created=5" in result.stderr


def test_endpoints_are_mirrored_exactly(world: World) -> None:
    world.service("web", ports=[{"name": "http", "port": 80, "targetPort": 8080}])
    world.endpoints("web", SUBSETS)

    assert world.run().returncode == 0

    mirror = world.local.get("Endpoints", world.mirror_ns, world.mirror_name("web"))
    [subset] = mirror["subsets"]
    assert subset["addresses"] == [
        {"ip": "10.1.0.1", "hostname": "web-0", "targetRef": {"kind": "Pod", "name": "web-0"}},
        {"ip": "10.1.0.2", "hostname": "web-1", "targetRef": {"kind": "Pod", "name": "web-1"}},
    ]
    assert subset["notReadyAddresses"] == [
        {"ip": "10.1.0.3", "targetRef": {"kind": "Pod", "name": "web-2"}}
    ]
    assert sorted((p["name"], p["port"]) for p in subset["ports"]) == [
        ("http", 8080),
        ("metrics", 9090),
    ]


def test_a_pass_over_an_unchanged_world_writes_nothing(world: World) -> None:
    for name in ("a", "b", "c"):
        world.service(
            name, ports=[{"name": "y", "port": 80}, {"name": "x", "port": 81, "protocol": "UDP"}]
        )
        world.endpoints(name, SUBSETS)
    world.service("h", clusterIP="None")
    assert world.run().returncode == 0
    writes = len(world.writes())
    assert writes == 7

    second = world.run()

    assert second.returncode == 0
    assert len(world.writes()) == writes
    assert "unchanged=4" in second.stderr


def test_remote_changes_are_reflected_after_one_pass(world: World) -> None:
    world.service("web")
    world.endpoints("web", SUBSETS)
    world.service("db", clusterIP="None")
    world.service("api")
    world.service("gone")
    world.endpoints("gone", SUBSETS)
    assert world.run().returncode == 0
    ip_before = world.mirrors()[world.mirror_name("api")]["spec"]["clusterIP"]

    world.service("web", ports=[{"name": "http", "port": 80}, {"name": "https", "port": 443}])
    world.endpoints("web", [{"addresses": [{"ip": "10.2.0.9"}], "ports": [{"port": 8443}]}])
    world.remote.delete("Service", world.remote_ns, "db")
    world.service("db")  # headless -> ClusterIP
    world.remote.delete("Service", world.remote_ns, "api")
    world.service("api", clusterIP="None")  # ClusterIP -> headless
    world.remote.delete("Service", world.remote_ns, "gone")  # the API server drops its Endpoints

    result = world.run()

    assert result.returncode == 0, result.stderr
    mirrors = world.mirrors()
    assert set(mirrors) == {world.mirror_name(n) for n in ("web", "db", "api")}
    assert [p["port"] for p in mirrors[world.mirror_name("web")]["spec"]["ports"]] == [80, 443]
    assert mirrors[world.mirror_name("db")]["spec"]["clusterIP"] != "None"
    assert mirrors[world.mirror_name("api")]["spec"]["clusterIP"] == "None" != ip_before
    endpoints = world.mirrors("Endpoints")
    assert set(endpoints) == {world.mirror_name("web")}
    assert endpoints[world.mirror_name("web")]["subsets"][0]["addresses"] == [{"ip": "10.2.0.9"}]
    assert "updated=1 recreated=2 deleted=1" in result.stderr


def test_other_prefixes_and_unlabelled_objects_are_never_modified(world: World) -> None:
    world.service("web")
    world.service("taken")
    world.endpoints("taken", SUBSETS)  # must not be written under someone else's Service
    ns = world.mirror_ns
    other = service(ns, world.mirror_name("web", prefix="other"), labels={
        "mirrored-svc": "true", "mirror-svc-prefix-sync": "other"})  # fmt: skip
    stranger = service(ns, world.mirror_name("taken"), labels={"app": "mine"})
    unlabelled_stale = service(ns, world.mirror_name("stale"), labels={"mirrored-svc": "true"})
    before = {
        o["metadata"]["name"]: o["metadata"]["resourceVersion"]
        for o in (
            world.local.create(other),
            world.local.create(stranger),
            world.local.create(unlabelled_stale),
        )
    }

    result = world.run()

    assert result.returncode == 1  # the name held by someone else is a conflict
    assert f"conflict on Service {world.mirror_name('taken')}" in result.stderr
    assert "conflicts=1" in result.stderr and "failed=0" in result.stderr
    assert world.local.find("Endpoints", ns, world.mirror_name("taken")) is None
    for name, version in before.items():
        assert world.local.get("Service", ns, name)["metadata"]["resourceVersion"] == version
    assert world.mirror_name("web") in world.mirrors()


def test_a_name_over_63_characters_is_skipped_and_the_rest_mirrored(world: World) -> None:
    long_name = "a-service-name-that-is-long-enough-to-overflow"
    world.service(long_name)
    world.service("short")

    result = world.run()

    assert result.returncode == 1
    mirror = world.mirror_name(long_name)
    why = f"mirror name '{mirror}' is {len(mirror)} characters"
    assert f"skip Service {world.remote_ns}/{long_name}: {why}" in result.stderr
    assert set(world.mirrors()) == {world.mirror_name("short")}
    assert "skipped=1" in result.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(world: World) -> None:
    world.service("web")
    world.service("db")
    assert world.run().returncode == 0
    writes = len(world.writes())
    world.service("web", ports=[{"port": 8080}])
    world.remote.delete("Service", world.remote_ns, "db")
    world.service("new")

    result = world.run("--dry-run")

    assert result.returncode == 0, result.stderr
    assert len(world.writes()) == writes
    assert f"+ create Service {world.mirror_name('new')}" in result.stdout
    assert f"~ update Service {world.mirror_name('web')}" in result.stdout
    assert "now: ports [8080/TCP]" in result.stdout
    assert f"- delete Service {world.mirror_name('db')}" in result.stdout
    assert "dry run planned: created=1 updated=1 recreated=0 deleted=1" in result.stderr


def test_no_svc_sync_once_deletes_nothing(world: World) -> None:
    world.service("web")
    assert world.run().returncode == 0
    world.remote.delete("Service", world.remote_ns, "web")

    result = world.run("-svc-sync=false")

    assert result.returncode == 0
    assert world.mirror_name("web") in world.mirrors()
    assert "held=1" in result.stderr


def test_loop_runs_passes_and_stops_cleanly_on_sigterm(world: World) -> None:
    world.service("old")  # mirrored by an earlier run: --no-svc-sync loop must keep it
    assert world.run().returncode == 0
    world.remote.delete("Service", world.remote_ns, "old")
    world.service("web")
    loop = start_cli(["loop", *world.args(), "--resync-period", "300ms", "--no-svc-sync"])
    try:
        _wait_for(lambda: world.mirror_name("web") in world.mirrors())
        world.remote.delete("Service", world.remote_ns, "web")  # seen, then gone: deletable
        _wait_for(lambda: world.mirror_name("web") not in world.mirrors())
        time.sleep(1)  # a few more passes over the converged world
    finally:
        loop.send_signal(signal.SIGTERM)
        _, stderr = loop.communicate(timeout=60)
    assert loop.returncode == 0, stderr
    assert stderr.count("pass done") >= 3
    assert "SIGTERM received" in stderr and "stopped" in stderr
    assert world.mirror_name("old") in world.mirrors()


def test_missing_mirror_namespace_is_exit_3(world: World) -> None:
    world.service("web")
    result = world.run("--mirror-ns", "does-not-exist")
    assert result.returncode == 3
    assert "mirror namespace 'does-not-exist' does not exist" in result.stderr


def test_unreachable_remote_is_exit_3_and_changes_nothing(world: World, tmp_path) -> None:
    world.service("web")
    assert world.run().returncode == 0
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(
        world.remote.plane.kubeconfig.read_text().replace(
            world.remote.plane.url, "https://127.0.0.1:9"
        )
    )
    writes = len(world.writes())

    result = world.run("--target-kube-config", str(dead), "--pass-timeout", "3s")

    assert result.returncode == 3
    assert "remote API server" in result.stderr and "reachable" in result.stderr
    assert len(world.writes()) == writes


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_a_service_whose_endpoints_lack_the_label_is_named_every_pass(world: World) -> None:
    """Issue 20: a selected selectorless Service whose Endpoints do not carry the label was
    mirrored empty with exit 0 and not a word: its name answers no address."""
    world.service("web")
    world.remote.apply(endpoints(world.remote_ns, "web", SUBSETS, labels={"other": "label"}))
    world.service("db")
    world.endpoints("db", SUBSETS)
    for _ in range(2):  # each pass, not only the first
        result = world.run()
        assert result.returncode == 0, result.stderr
        assert "empty=1" in result.stderr
        assert (
            f"remote Service {world.remote_ns}/web has no Endpoints that the label selector "
            f"'{world.selector}' matches"
        ) in result.stderr
        assert f"{world.remote_ns}/db has no" not in result.stderr


def test_an_ip_family_policy_change_is_made_in_place(world: World) -> None:
    """Issue 20: kube-service-mirror's mirrors are SingleStack (the API server's default); a
    dual-stack remote's PreferDualStack recreated every one of them at once, with new cluster
    IPs and outside the deletion guard. The API server changes the policy in place."""
    world.service("web", ipFamilyPolicy="PreferDualStack")  # remote is dual-stack
    name = world.mirror_name("web")
    world.local.create(service(world.mirror_ns, name, labels={
        "mirrored-svc": "true", "mirror-svc-prefix-sync": world.prefix}))  # fmt: skip
    before = world.local.get("Service", world.mirror_ns, name)
    assert before["spec"]["ipFamilyPolicy"] == "SingleStack"
    mark = len(world.writes())

    def kept(policy: str) -> None:
        now = world.local.get("Service", world.mirror_ns, name)
        assert now["spec"]["ipFamilyPolicy"] == policy
        assert now["metadata"]["uid"] == before["metadata"]["uid"]
        assert now["spec"]["clusterIP"] == before["spec"]["clusterIP"]

    assert world.run().returncode == 0
    kept("PreferDualStack")
    world.remote.delete("Service", world.remote_ns, "web")
    world.service("web", ipFamilyPolicy="SingleStack", ipFamilies=["IPv4"])
    assert world.run().returncode == 0
    kept("SingleStack")
    verbs = {w["verb"] for w in world.writes()[mark:] if w["objectRef"].get("name") == name}
    assert verbs == {"patch"}
