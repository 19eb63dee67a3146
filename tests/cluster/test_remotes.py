"""Several remotes in one pass (`--config`), and global services merged across them.

Three control planes: `remote`, `remote2` and `local`. Each test names its remotes `a` and `b`
with prefixes of its own, so tests stay apart as with one remote.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import controlplane, workloads
from tests.support.cli import run_cli, start_cli
from tests.support.cluster import Cluster, Json, service
from tests.support.faultproxy import FaultProxy
from tests.support.loop import LoopRun
from tests.support.observability import free_port, scrape, value
from tests.support.resolver import Resolver, answers_with
from tests.support.world import World


@pytest.fixture
def world(remote: Cluster, local: Cluster) -> World:
    return World.new(remote, local, endpoints_api="endpointslices")


def prefixes(world: World) -> dict[str, str]:
    return {"a": f"{world.prefix}a", "b": f"{world.prefix}b", "global": f"{world.prefix}g"}


def write_config(world: World, path: Path, kubeconfigs: dict[str, str],
                 global_services: bool = False, **extra: Any) -> str:  # fmt: skip
    """A --config file: remotes a and b (each with its kubeconfig), the world's selector, and
    extra top-level keys."""
    names = {**prefixes(world), **extra.pop("prefixes", {})}
    config: dict[str, Any] = {
        "mirrorNamespace": world.mirror_ns,
        "local": {"kubeconfig": world.local.kubeconfig},
        "remotes": [{"name": name, "prefix": names[name], "labelSelector": world.selector,
                     "kubeconfig": kubeconfig} for name, kubeconfig in kubeconfigs.items()],
        **extra,
    }  # fmt: skip
    if global_services:
        config["global"] = {"prefix": names["global"], "labelSelector": f"{world.label}-global=yes"}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def both(world: World, remote2: Cluster) -> dict[str, str]:
    return {"a": world.remote.kubeconfig, "b": remote2.kubeconfig}


def mirrors_of(world: World, prefix: str, kind: str = "Service") -> dict[str, Json]:
    selector = f"mirrored-svc=true,mirror-svc-prefix-sync={prefix}"
    return {o["metadata"]["name"]: o for o in world.local.list(kind, world.mirror_ns, selector)}


def in_remote2(world: World, remote2: Cluster) -> None:
    """The world's remote namespace on remote2 too: global services meet by namespace."""
    remote2.request("POST", "/api/v1/namespaces", {"metadata": {"name": world.remote_ns}})


def web_in_a_and_api_in_b(world: World, remote2: Cluster) -> None:
    in_remote2(world, remote2)
    world.service("web")
    remote2.apply(service(world.remote_ns, "api", labels={world.label: "yes"}))


def test_both_remotes_are_mirrored_in_one_pass_that_lists_the_local_namespace_once(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    in_remote2(world, remote2)
    world.service("web")
    world.slice("web", "web-1", [{"addresses": ["10.1.0.1"], "conditions": {"ready": True}}])
    remote2.apply(service(world.remote_ns, "api", labels={world.label: "yes"}))
    remote2.apply(service(world.remote_ns, "web", labels={world.label: "yes"}))
    config = write_config(world, tmp_path / "config.yaml", both(world, remote2))

    result = run_cli(["once", "--config", config, "--log-format", "json"])

    assert result.returncode == 0, result.stderr
    names = prefixes(world)
    assert set(mirrors_of(world, names["a"])) == {world.mirror_name("web", prefix=names["a"])}
    assert set(mirrors_of(world, names["b"])) == {
        world.mirror_name(n, prefix=names["b"]) for n in ("api", "web")
    }
    assert len(mirrors_of(world, names["a"], "EndpointSlice")) == 1
    lists = [e for e in world.local.audit() if e["verb"] == "list"
             and e["objectRef"].get("namespace") == world.mirror_ns
             and e["userAgent"].startswith("ksm-sync/")]  # fmt: skip
    assert sorted(e["objectRef"]["resource"] for e in lists) == [
        "endpoints", "endpointslices", "services"
    ]  # fmt: skip
    [summary] = [json.loads(line) for line in result.stderr.splitlines() if '"counts"' in line]
    assert summary["remotes"] == {
        "a": {**summary["remotes"]["a"], "created": 1},
        "b": {**summary["remotes"]["b"], "created": 2},
    }


def test_a_remote_made_unreachable_mid_run_leaves_its_mirrors_as_they_are(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    web_in_a_and_api_in_b(world, remote2)
    names = prefixes(world)
    with FaultProxy(remote2.plane, seed=8) as proxy:
        kubeconfigs = {"a": world.remote.kubeconfig,
                       "b": proxy.write_kubeconfig(tmp_path / "b.kubeconfig")}  # fmt: skip
        config = write_config(world, tmp_path / "config.yaml", kubeconfigs)
        url = f"127.0.0.1:{free_port()}"
        run = LoopRun(["--config", config, "--resync-period", "300ms", "--pass-timeout", "3s",
                       "--request-timeout", "1s", "--listen-address", url])  # fmt: skip
        try:
            run.wait_for(lambda: len(mirrors_of(world, names["b"])) == 1, 60, "b mirrored")
            before = {n: m["metadata"]["resourceVersion"]
                      for n, m in mirrors_of(world, names["b"]).items()}  # fmt: skip
            proxy.rate, proxy.faults, proxy.stall_seconds = 1.0, ("stall",), 30  # b stops
            remote2.delete("Service", world.remote_ns, "api")  # which no pass can see now
            world.service("new")  # while a goes on
            run.wait_for(lambda: world.mirror_name("new", prefix=names["a"])
                         in mirrors_of(world, names["a"]), 60, "a mirrored meanwhile")  # fmt: skip
            run.wait_for(lambda: any("remote b not read" in m for m in run.messages()), 30,
                         "a pass that names b")  # fmt: skip
            metrics = scrape(f"http://{url}")
        finally:
            code = run.stop()
    assert code == 0, run.tail()
    after = {n: m["metadata"]["resourceVersion"] for n, m in mirrors_of(world, names["b"]).items()}
    assert after == before  # untouched, though its remote Service is gone
    failing = [line for line in run.lines if "remote b not read" in str(line.get("message"))]
    assert failing[-1]["exit_code"] == 3 and "remote b API server" in failing[-1]["message"]
    assert value(metrics, "ksm_sync_remote_up", remote="b") == 0
    assert value(metrics, "ksm_sync_remote_up", remote="a") == 1


def test_a_global_service_answers_with_the_pods_of_both_remotes(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    in_remote2(world, remote2)
    labels = {world.label: "yes", f"{world.label}-global": "yes"}
    ips: dict[str, set[str]] = {}
    headless = {"clusterIP": "None", "selector": {"app": "web"}}
    for name, cluster in (("a", world.remote), ("b", remote2)):
        ports = [{"name": "h", "port": 80}]
        cluster.apply(service(world.remote_ns, "web", labels=labels, ports=ports, **headless))
        workloads.deployment(cluster, world.remote_ns, "web", 2)
        ips[name] = set(workloads.ready_pods(cluster, world.remote_ns, "web", 2).values())
        workloads.wait_endpoints(cluster, world.remote_ns, "web", ips[name])
    config = write_config(world, tmp_path / "config.yaml", both(world, remote2),
                          global_services=True)  # fmt: skip
    global_prefix = prefixes(world)["global"]
    address = controlplane.dns(world.local.plane.dir.parent, svc_prefix=global_prefix,
                               mirror_ns=world.mirror_ns, die_with_parent=True)  # fmt: skip
    host, port = address.rsplit(":", 1)
    resolver = Resolver(host, int(port), f"cluster.{global_prefix}")
    name = resolver.name("web", world.remote_ns)

    first = run_cli(["once", "--config", config])
    assert first.returncode == 0, first.stderr
    resolver.wait(name, "A", answers_with(ips["a"] | ips["b"]))
    slices = mirrors_of(world, global_prefix, "EndpointSlice")
    assert {s["metadata"]["labels"]["ksm-sync/source-cluster"] for s in slices.values()} == {
        "a",
        "b",
    }

    remote2.delete("Service", world.remote_ns, "web")  # b drops it
    second = run_cli(["once", "--config", config])
    assert second.returncode == 0, second.stderr
    resolver.wait(name, "A", answers_with(ips["a"]))
    slices = mirrors_of(world, global_prefix, "EndpointSlice")
    assert {s["metadata"]["labels"]["ksm-sync/source-cluster"] for s in slices.values()} == {"a"}


def test_a_dry_run_covers_every_remote_and_writes_nothing(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    web_in_a_and_api_in_b(world, remote2)
    config = write_config(world, tmp_path / "config.yaml", both(world, remote2))

    result = run_cli(["once", "--config", config, "--dry-run"])

    assert result.returncode == 0, result.stderr
    names = prefixes(world)
    assert f"+ create Service {world.mirror_name('web', prefix=names['a'])}" in result.stdout
    assert f"+ create Service {world.mirror_name('api', prefix=names['b'])}" in result.stdout
    assert world.writes() == []


def test_a_bad_config_is_exit_2_naming_the_field_and_clashing_options(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    config = write_config(world, tmp_path / "config.yaml", both(world, remote2))
    broken = tmp_path / "broken.yaml"
    broken.write_text(Path(config).read_text().replace("prefix: ", "prefix: Bad", 1))
    bad = run_cli(["once", "--config", str(broken)])
    assert bad.returncode == 2 and re.search(
        r"remotes\[0\]\.prefix: 'Bad\w+' is invalid", bad.stderr
    )
    clash = run_cli(["once", "--config", config, "--svc-prefix", "x"])
    assert clash.returncode == 2
    assert "describes the remotes: drop --svc-prefix (KSM_SVC_PREFIX)" in clash.stderr
    twice = run_cli(["once", "--config", config, "--mirror-ns", "other"])
    assert twice.returncode == 2 and "mirrorNamespace is set in --config" in twice.stderr
    assert world.writes() == []


def test_corefile_prints_a_block_per_remote_and_for_the_global_services(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    config = write_config(world, tmp_path / "config.yaml", both(world, remote2),
                          global_services=True)  # fmt: skip
    result = run_cli(["corefile", "--config", config])
    assert result.returncode == 0, result.stderr
    zones = re.findall(r"^(cluster\.\S+) \{$", result.stdout, flags=re.M)
    assert zones == [f"cluster.{p}" for p in prefixes(world).values()]


def unreachable(kubeconfig: str, path: Path) -> str:
    """A copy of kubeconfig whose server nobody answers on."""
    config = json.loads(Path(kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    path.write_text(json.dumps(config))
    return str(path)


def dns_for(world: World, prefix: str) -> Resolver:
    address = controlplane.dns(world.local.plane.dir.parent, svc_prefix=prefix,
                               mirror_ns=world.mirror_ns, die_with_parent=True)  # fmt: skip
    host, port = address.rsplit(":", 1)
    return Resolver(host, int(port), f"cluster.{prefix}")


def test_prefixes_that_collide_leave_the_name_to_its_holder_which_keeps_answering(
    world: World, tmp_path: Path
) -> None:
    """Issue 20: remote a (prefix P) has Service `a-web`, remote b (prefix `P-a`) has `web`:
    both mirror as `P-a-web-...`. b's create met a's mirror, and its 409 blocked every write
    under that name in the pass, a's too: a's mirror stopped following its remote for good."""
    p = world.prefix
    names = {"a": p, "b": f"{p}-a"}
    world.service("a-web", clusterIP="None")
    world.slice("a-web", "a-web-1", [{"addresses": ["10.1.0.1"], "conditions": {"ready": True}}])
    only_a = write_config(world, tmp_path / "a.yaml", {"a": world.remote.kubeconfig},
                          prefixes=names)  # fmt: skip
    assert run_cli(["once", "--config", only_a]).returncode == 0
    resolver = dns_for(world, p)
    name = resolver.name("a-web", world.remote_ns)
    resolver.wait(name, "A", answers_with({"10.1.0.1"}))
    world.service("web")  # b's, whose mirror name is a's a-web's
    world.slice("a-web", "a-web-1", [{"addresses": ["10.1.0.2"], "conditions": {"ready": True}}])
    assert world.mirror_name("a-web", prefix=names["a"]) == world.mirror_name(
        "web", prefix=names["b"]
    )
    both_config = write_config(world, tmp_path / "both.yaml", {"a": world.remote.kubeconfig,
                               "b": world.remote.kubeconfig}, prefixes=names)  # fmt: skip

    result = run_cli(["once", "--config", both_config])

    assert result.returncode == 1, result.stderr
    assert f"is held by the mirror of prefix '{p}'" in result.stderr
    resolver.wait(name, "A", answers_with({"10.1.0.2"}))  # a's mirror follows its remote
    held = mirrors_of(world, names["a"])[world.mirror_name("a-web", prefix=names["a"])]
    assert held["metadata"]["annotations"]["ksm-sync/remote-name"] == "a-web"


def test_a_global_service_keeps_its_shape_and_address_while_its_first_cluster_is_away(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    """Issue 20: a has web as a ClusterIP Service, b as a headless one; a, first in the
    configuration, sets the mirror's shape. a missing one pass recreated the mirror as b's
    (a new address, NXDOMAIN while it happened), and again when a was back."""
    in_remote2(world, remote2)
    labels = {world.label: "yes", f"{world.label}-global": "yes"}
    ports = [{"name": "h", "port": 80}]
    world.remote.apply(service(world.remote_ns, "web", labels=labels, ports=ports))
    remote2.apply(service(world.remote_ns, "web", labels=labels, ports=ports, clusterIP="None"))
    config = write_config(world, tmp_path / "config.yaml", both(world, remote2),
                          global_services=True)  # fmt: skip
    assert run_cli(["once", "--config", config]).returncode == 0
    global_prefix = prefixes(world)["global"]
    mirror = world.mirror_name("web", prefix=global_prefix)
    before = mirrors_of(world, global_prefix)[mirror]
    resolver = dns_for(world, global_prefix)
    name = resolver.name("web", world.remote_ns)
    resolver.wait(name, "A", answers_with({before["spec"]["clusterIP"]}))
    away = write_config(world, tmp_path / "away.yaml", {
        "a": unreachable(world.remote.kubeconfig, tmp_path / "a.kubeconfig"),
        "b": remote2.kubeconfig}, global_services=True)  # fmt: skip

    result = run_cli(["once", "--config", away, "--request-timeout", "1s"])

    assert result.returncode == 3 and "remote a not read" in result.stderr, result.stderr
    after = mirrors_of(world, global_prefix)[mirror]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"]["clusterIP"] == before["spec"]["clusterIP"]
    assert answers_with({before["spec"]["clusterIP"]})(resolver.ask(name))


def test_a_remote_dropped_from_the_config_is_named_retired_and_pruned_only_if_asked(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    """Issue 20: a remote dropped from the configuration left its mirrors forever, and no pass
    said a word of them."""
    web_in_a_and_api_in_b(world, remote2)
    assert run_cli(["once", "--config", write_config(
        world, tmp_path / "both.yaml", both(world, remote2))]).returncode == 0  # fmt: skip
    b = prefixes(world)["b"]
    kept = {n: m["metadata"]["resourceVersion"] for n, m in mirrors_of(world, b).items()}
    assert len(kept) == 1
    only_a = {"a": world.remote.kubeconfig}
    metrics = tmp_path / "ksm-sync.prom"

    told = run_cli(["once", "--config", write_config(world, tmp_path / "a.yaml", only_a),
                    "--metrics-file", str(metrics)])  # fmt: skip

    assert told.returncode == 0, told.stderr
    assert f"retired prefix '{b}': 1 mirrors in {world.mirror_ns}" in told.stderr
    assert f'ksm_sync_retired_mirrors{{retired_prefix="{b}"}} 1.0' in metrics.read_text()
    assert {n: m["metadata"]["resourceVersion"] for n, m in mirrors_of(world, b).items()} == kept
    other = run_cli(["once", "--config", write_config(world, tmp_path / "other.yaml", only_a,
                                                      otherPrefixes=[b])])  # fmt: skip
    assert other.returncode == 0 and "retired" not in other.stderr, other.stderr
    assert len(mirrors_of(world, b)) == 1

    pruned = run_cli(["once", "--config", write_config(world, tmp_path / "prune.yaml", only_a,
                                                       pruneRetired=True)])  # fmt: skip

    assert pruned.returncode == 0, pruned.stderr
    assert mirrors_of(world, b) == {} and mirrors_of(world, b, "EndpointSlice") == {}
    assert len(mirrors_of(world, prefixes(world)["a"])) == 1


def test_a_second_sigterm_stops_at_once_while_both_remotes_stall(
    world: World, remote2: Cluster, tmp_path: Path
) -> None:
    """Remotes are read in threads of their own; "stop now" must not wait for their reads."""
    in_remote2(world, remote2)
    with FaultProxy(world.remote.plane, seed=7) as a, FaultProxy(remote2.plane, seed=8) as b:
        for proxy in (a, b):
            proxy.rate, proxy.faults, proxy.stall_seconds = 1.0, ("stall",), 60
        kubeconfigs = {"a": a.write_kubeconfig(tmp_path / "a.kubeconfig"),
                       "b": b.write_kubeconfig(tmp_path / "b.kubeconfig")}  # fmt: skip
        config = write_config(world, tmp_path / "config.yaml", kubeconfigs)
        process = start_cli(["once", "--config", config, "--request-timeout", "30s"])
        deadline = time.monotonic() + 60
        while not (a.requests() and b.requests()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.requests() and b.requests(), "the pass never reached both remotes"
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    stopped = time.monotonic() - started
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stopped < 5, f"{stopped:.1f}s after the second SIGTERM\n{stderr}"
    assert "received again: stopping now" in stderr
