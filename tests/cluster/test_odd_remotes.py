"""Odd remotes: each mirrored correctly or skipped with a clear reason; never a crash or bad mirror.

One remote namespace holds every odd case; the CLI runs over it twice (module fixture), and
each test below checks its own case in what those two passes left: the mirror, and that the
second pass wrote nothing (the normalisation holds for the odd shapes too).
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.cluster import Cluster, Json
from tests.support.world import World

PORT = [{"name": "http", "port": 80}]
LONG_NAME = "a-service-name-long-enough-to-overflow-the-mirror"  # 49 characters
LONG_NAMESPACE_STEM = "a-namespace-long-enough-to-overflow-the-mirror"  # + "-" and 6 hex
ODD_LABELS = {"example.com/odd_key.x-y": "A.b-c_9", "x": "", "UPPER.case-Key_1": "V-1.0_rc"}
ODD_ANNOTATIONS = {
    "example.com/unicode": "ünïcødé ✓ 名前",
    "multi": "line one\nline two\n\ttabbed",
    "json": '{"a": [1, 2, {"b": null}], "c": "\\"quoted\\""}',
    "big": "x" * 20000,
    "empty": "",
}


def addresses(count: int, base: str = "10.4") -> list[Json]:
    return [{"ip": f"{base}.{i // 250}.{i % 250 + 1}"} for i in range(count)]


@dataclass
class Odd:
    world: World
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    second_writes: list[Json]

    def mirror(self, name: str, kind: str = "Service") -> Json | None:
        return self.world.local.find(kind, self.world.mirror_ns, self.world.mirror_name(name))


def build(world: World) -> None:
    w = world
    w.service("ext", type="ExternalName", externalName="db.example.com", ports=PORT)
    w.endpoints("ext", [{"addresses": addresses(1), "ports": PORT}])  # ignored: ExternalName
    w.service("noports", clusterIP="None", ports=[])
    w.endpoints("noports", [{"addresses": addresses(2)}])
    many = [{"name": f"p{i}", "port": 1000 + i, "targetPort": 2000 + i} for i in range(100)]
    w.service("many", ports=many)
    w.endpoints("many", [{"addresses": addresses(2), "ports": [
        {"name": f"p{i}", "port": 2000 + i} for i in range(100)]}])  # fmt: skip
    mixed = [{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
             {"name": "dns-udp", "port": 53, "protocol": "UDP"},
             {"name": "sig", "port": 9999, "protocol": "SCTP",
              "appProtocol": "example.com/sig"}]  # fmt: skip
    w.service("mixed", ports=mixed)
    w.endpoints("mixed", [{"addresses": addresses(1), "ports": [
        dict(p) for p in mixed]}])  # fmt: skip
    w.service("dual")
    w.endpoints("dual", [{"addresses": [{"ip": "10.5.0.1"}, {"ip": "2001:db8::1"}],
                          "notReadyAddresses": [{"ip": "fd00::2"}], "ports": PORT}])  # fmt: skip
    w.service("v6only")
    w.endpoints("v6only", [{"addresses": [{"ip": "2001:db8::10"}, {"ip": "2001:db8::11"}],
                            "ports": PORT}])  # fmt: skip
    w.service("huge")
    w.endpoints("huge", [{"addresses": addresses(1500, "10.6"), "ports": PORT}])
    w.service("capped")
    capped = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {
        "name": "capped", "namespace": w.remote_ns, "labels": {w.label: "yes"},
        "annotations": {"endpoints.kubernetes.io/over-capacity": "truncated"}},
        "subsets": [{"addresses": addresses(1000, "10.7"), "ports": PORT}]}  # fmt: skip
    w.remote.apply(capped)
    w.endpoints("lonely", [{"addresses": addresses(1), "ports": PORT}])  # no Service
    w.service("bare")  # no Endpoints
    w.service(LONG_NAME)
    long_ns = f"{LONG_NAMESPACE_STEM}-{w.label[-6:]}"
    w.remote.request("POST", "/api/v1/namespaces", {"metadata": {"name": long_ns}})
    w.service("x", namespace=long_ns)
    w.service("odd", labels={w.label: "yes", **ODD_LABELS})
    odd = w.remote.get("Service", w.remote_ns, "odd")
    odd["metadata"]["annotations"] = ODD_ANNOTATIONS
    w.remote.request("PUT", f"/api/v1/namespaces/{w.remote_ns}/services/odd", odd)
    # An orphan: an Endpoints mirror of ours whose Service mirror is gone.
    w.local.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {
        "name": w.mirror_name("vanished"), "namespace": w.mirror_ns,
        "labels": {"mirrored-svc": "true", "mirror-svc-prefix-sync": w.prefix}},
        "subsets": [{"addresses": addresses(1), "ports": PORT}]})  # fmt: skip


@pytest.fixture(scope="module")
def odd(remote: Cluster, local: Cluster) -> Odd:
    tag = secrets.token_hex(3)
    world = World(remote, local, remote.create_namespace("remote"),
                  local.create_namespace("mirrors"), f"mirror-{tag}", f"p{tag}")  # fmt: skip
    build(world)
    first = world.run()
    mark = len(world.writes())
    second = world.run()
    return Odd(world, first, second, world.writes()[mark:])


def test_second_pass_over_odd_remotes_writes_nothing(odd: Odd) -> None:
    assert odd.first.returncode == 1, odd.first.stderr  # the two skips, nothing else
    assert "failed=0" in odd.first.stderr and "conflicts=0" in odd.first.stderr
    assert odd.second.returncode == 1 and "skipped=2" in odd.second.stderr
    assert odd.second_writes == [], [e["objectRef"] for e in odd.second_writes]


def test_external_name_is_mirrored_as_external_name_without_endpoints(odd: Odd) -> None:
    svc = odd.mirror("ext")
    assert svc is not None
    assert svc["spec"]["type"] == "ExternalName"
    assert svc["spec"]["externalName"] == "db.example.com"
    assert odd.mirror("ext", "Endpoints") is None


def test_headless_without_ports(odd: Odd) -> None:
    svc, eps = odd.mirror("noports"), odd.mirror("noports", "Endpoints")
    assert svc is not None and eps is not None
    assert svc["spec"]["clusterIP"] == "None" and not svc["spec"].get("ports")
    assert eps["subsets"] == [{"addresses": [{"ip": "10.4.0.1"}, {"ip": "10.4.0.2"}]}]


def test_a_hundred_ports(odd: Odd) -> None:
    svc, eps = odd.mirror("many"), odd.mirror("many", "Endpoints")
    assert svc is not None and eps is not None
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {f"p{i}": (1000 + i, 2000 + i) for i in range(100)}
    assert len(eps["subsets"][0]["ports"]) == 100


def test_mixed_protocols(odd: Odd) -> None:
    svc, eps = odd.mirror("mixed"), odd.mirror("mixed", "Endpoints")
    assert svc is not None and eps is not None
    ports = {
        (p["name"], p["port"], p["protocol"], p.get("appProtocol")) for p in svc["spec"]["ports"]
    }
    assert ports == {("dns-tcp", 53, "TCP", None), ("dns-udp", 53, "UDP", None),
                     ("sig", 9999, "SCTP", "example.com/sig")}  # fmt: skip
    assert {p["protocol"] for p in eps["subsets"][0]["ports"]} == {"TCP", "UDP", "SCTP"}


def test_dual_stack_and_ipv6_only_addresses(odd: Odd) -> None:
    dual, v6 = odd.mirror("dual", "Endpoints"), odd.mirror("v6only", "Endpoints")
    assert dual is not None and v6 is not None
    assert {a["ip"] for a in dual["subsets"][0]["addresses"]} == {"10.5.0.1", "2001:db8::1"}
    assert [a["ip"] for a in dual["subsets"][0]["notReadyAddresses"]] == ["fd00::2"]
    assert {a["ip"] for a in v6["subsets"][0]["addresses"]} == {"2001:db8::10", "2001:db8::11"}


def test_over_a_thousand_addresses_are_mirrored_as_they_are(odd: Odd) -> None:
    """Decision: mirror every address. The API server accepts it; the 1000 cap is the
    endpoints controller's, and the local EndpointSlice mirroring controller applies its own."""
    huge, capped = odd.mirror("huge", "Endpoints"), odd.mirror("capped", "Endpoints")
    assert huge is not None and capped is not None
    assert len(huge["subsets"][0]["addresses"]) == 1500
    assert len(capped["subsets"][0]["addresses"]) == 1000
    # The remote controller's statement about the remote object is not ours to copy.
    assert "endpoints.kubernetes.io/over-capacity" not in (
        capped["metadata"].get("annotations") or {}
    )


def test_endpoints_without_a_service_are_not_mirrored_and_orphans_go(odd: Odd) -> None:
    assert odd.mirror("lonely") is None and odd.mirror("lonely", "Endpoints") is None
    assert odd.mirror("vanished", "Endpoints") is None  # our orphan, removed


def test_a_service_without_endpoints_gets_no_endpoints_mirror(odd: Odd) -> None:
    assert odd.mirror("bare") is not None
    assert odd.mirror("bare", "Endpoints") is None


def test_an_unnameable_mirror_is_skipped_with_the_remote_named(odd: Odd) -> None:
    name = odd.world.mirror_name(LONG_NAME)
    assert len(name) > 63
    assert f"skip Service {odd.world.remote_ns}/{LONG_NAME}" in odd.first.stderr
    assert f"{len(name)} characters" in odd.first.stderr
    assert "skipped=2" in odd.first.stderr
    assert odd.world.local.find("Service", odd.world.mirror_ns, name[:63]) is None


def test_unusual_labels_and_annotations_do_not_leak_into_the_mirror(odd: Odd) -> None:
    svc = odd.mirror("odd")
    assert svc is not None
    assert svc["metadata"]["labels"] == {"mirrored-svc": "true",
                                         "mirror-svc-prefix-sync": odd.world.prefix}  # fmt: skip
    assert set(svc["metadata"]["annotations"]) == {"ksm-sync/remote-namespace",
                                                   "ksm-sync/remote-name"}  # fmt: skip


def test_a_selector_with_a_domain_prefix_and_odd_value(world: World) -> None:
    key = f"example.com/{world.label}_x.Y"
    world.service("web", labels={key: "A.b-c_9"})
    args = world.args()
    args[args.index("--label-selector") + 1] = f"{key}=A.b-c_9"
    result = world.run(*args, defaults=False)
    assert result.returncode == 0, result.stderr
    assert world.mirror_name("web") in world.mirrors()


def _replace(world: World, name: str, **spec: Any) -> None:
    """A type change the remote can only make by deleting and creating the Service."""
    world.remote.delete("Service", world.remote_ns, name)  # drops its Endpoints too
    world.service(name, **spec)


STEPS: list[tuple[str, dict[str, Any], bool]] = [
    ("ClusterIP", {}, False),
    ("headless", {"clusterIP": "None"}, True),
    ("ExternalName", {"type": "ExternalName", "externalName": "x.example.com"}, True),
    ("NodePort", {"type": "NodePort"}, False),
    ("ClusterIP", {"type": "ClusterIP"}, False),
]


def test_a_remote_service_changing_type_between_passes(world: World) -> None:
    subsets = [{"addresses": [{"ip": "10.8.0.1"}], "ports": PORT}]
    mirror = world.mirror_name("shifty")
    for label, spec, replace in STEPS:
        if replace:
            _replace(world, "shifty", **spec)
        else:
            world.service("shifty", **spec)  # in place
        world.endpoints("shifty", subsets)

        result = world.run()

        assert result.returncode == 0, f"{label}: {result.stderr}"
        svc = world.local.get("Service", world.mirror_ns, mirror)
        eps = world.local.find("Endpoints", world.mirror_ns, mirror)
        spec_now = svc["spec"]
        if label == "ExternalName":
            assert (
                spec_now["type"] == "ExternalName" and spec_now["externalName"] == "x.example.com"
            )
            assert eps is None
        else:
            assert spec_now["type"] == "ClusterIP", label
            assert (spec_now["clusterIP"] == "None") == (label == "headless"), label
            assert all("nodePort" not in p for p in spec_now["ports"]), label
            # Right after a recreate too: the API server dropped the old Endpoints mirror.
            assert eps is not None and eps["subsets"][0]["addresses"] == [{"ip": "10.8.0.1"}], label


def test_a_namespace_that_makes_the_mirror_name_too_long_is_skipped(odd: Odd) -> None:
    namespace = f"{LONG_NAMESPACE_STEM}-{odd.world.label[-6:]}"
    name = odd.world.mirror_name("x", namespace=namespace)
    assert f"skip Service {namespace}/x: mirror name {name!r} is {len(name)} characters" in (
        odd.first.stderr
    )
    assert odd.world.local.find("Service", odd.world.mirror_ns, name[:63]) is None
