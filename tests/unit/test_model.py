"""Normalisation at the edge: what the API server defaults or reorders must compare equal."""

from __future__ import annotations

from ksm_sync.mirror import mirror_service
from ksm_sync.model import (
    Service,
    endpoints_from_api,
    endpoints_to_api,
    service_from_api,
    service_to_api,
    subsets_from_api,
    subsets_to_api,
)
from ksm_sync.plan import service_change


def test_server_defaults_do_not_change_a_service_value() -> None:
    sent = {"metadata": {"name": "a", "namespace": "n"}, "spec": {"ports": [{"port": 80}]}}
    stored = {
        "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "7"},
        "spec": {
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "type": "ClusterIP",
            "clusterIP": "10.0.0.9",
            "clusterIPs": ["10.0.0.9"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
        },
    }
    assert service_change(service_from_api(sent), service_from_api(stored)) is None


def test_ports_keep_the_remote_order_and_an_order_change_is_no_change() -> None:
    a = {"metadata": {}, "spec": {"ports": [{"name": "b", "port": 2}, {"name": "a", "port": 1}]}}
    b = {"metadata": {}, "spec": {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}}
    assert [p.name for p in service_from_api(a).ports] == ["b", "a"]
    assert service_change(service_from_api(a), service_from_api(b)) is None


def test_subsets_split_or_ordered_differently_are_equal() -> None:
    ports = [{"name": "http", "port": 8080}]
    one = [{"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}], "ports": ports}]
    split = [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": ports},
        {
            "addresses": [{"ip": "10.0.0.2"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        },
    ]
    assert subsets_from_api(one) == subsets_from_api(split)


def test_endpoints_keep_hostname_target_name_and_not_ready() -> None:
    obj = {
        "metadata": {"name": "web", "namespace": "shop"},
        "subsets": [
            {
                "addresses": [
                    {"ip": "10.1.0.1", "hostname": "web-0", "nodeName": "n1",
                     "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "shop", "uid": "x"}}
                ],
                "notReadyAddresses": [{"ip": "10.1.0.2"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ],
    }  # fmt: skip
    back = endpoints_to_api(endpoints_from_api(obj))
    assert back["subsets"] == [
        {
            "ports": [{"port": 8080, "protocol": "TCP", "name": "http"}],
            "addresses": [{"ip": "10.1.0.1", "hostname": "web-0",
                           "targetRef": {"kind": "Pod", "name": "web-0"}}],
            "notReadyAddresses": [{"ip": "10.1.0.2"}],
        }
    ]  # fmt: skip


def test_service_round_trip_is_stable() -> None:
    obj = {
        "metadata": {"name": "db", "namespace": "n", "labels": {"a": "b"}},
        "spec": {
            "clusterIP": "None",
            "ports": [{"name": "pg", "port": 5432, "appProtocol": "postgres"}],
        },
    }
    value = service_from_api(obj)
    assert service_from_api(service_to_api(value)) == value
    assert service_to_api(value)["spec"]["clusterIP"] == "None"


def test_the_same_ip_with_and_without_a_hostname_sorts_without_error() -> None:
    """Optional fields hold None or text; the canonical order must not compare the two."""
    subsets = [
        {"addresses": [{"ip": "10.0.0.1", "hostname": "a"}, {"ip": "10.0.0.1"}],
         "ports": [{"port": 80, "appProtocol": "http"}, {"port": 80}]},
        {"notReadyAddresses": [{"ip": "10.0.0.2", "targetRef": {"name": "p"}}, {"ip": "10.0.0.2"}],
         "ports": [{"port": 81}]},
    ]  # fmt: skip
    once = subsets_from_api(subsets)
    assert once == subsets_from_api(list(reversed(subsets)))
    # One address per IP: RepackSubsets keys by IP and target uid, and a mirror has no uids.
    assert [a.hostname for a in once[0].addresses] == [None]


def test_not_ready_on_any_port_wins_over_ready_as_kubernetes_repacks() -> None:
    subsets = subsets_from_api([
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
        {"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
    ])  # fmt: skip
    assert [(s.addresses, [a.ip for a in s.not_ready]) for s in subsets] == [((), ["10.0.0.1"])]


def test_ports_with_the_same_addresses_share_one_subset() -> None:
    subsets = subsets_from_api([
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 443}]},
        {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]},
        # no ports, and the same addresses as a subset that has them: folded into it
        {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}]},
    ])  # fmt: skip
    assert [([p.port for p in s.ports], [a.ip for a in s.addresses]) for s in subsets] == [
        ([80, 443], ["10.0.0.1", "10.0.0.2"])
    ]


def test_a_mirror_of_a_stored_remote_sends_what_the_server_keeps() -> None:
    """Families and affinity are mirrored; what the local server stores of them is no change."""
    remote = {
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"ports": [{"port": 80}], "clusterIP": "10.0.0.9", "ipFamilyPolicy": "SingleStack",
                 "ipFamilies": ["IPv6"], "sessionAffinity": "ClientIP"},
    }  # fmt: skip
    mirror = mirror_service(service_from_api(remote), service_from_api(remote).meta)
    spec = service_to_api(mirror)["spec"]
    assert spec["ipFamilyPolicy"] == "SingleStack" and spec["ipFamilies"] == ["IPv6"]
    assert spec["sessionAffinity"] == "ClientIP"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    stored = {**remote, "spec": {**spec, "clusterIP": "fd00::9", "clusterIPs": ["fd00::9"],
                                 "internalTrafficPolicy": "Cluster"}}  # fmt: skip
    assert service_change(mirror, service_from_api(stored)) is None


def _service(policy: str, families: list[str]) -> Service:
    spec = {"ports": [{"port": 80}], "ipFamilyPolicy": policy, "ipFamilies": families}
    return service_from_api({"metadata": {"name": "a", "namespace": "n"}, "spec": spec})


def test_dual_stack_remotes_keep_their_policy_in_the_local_clusters_order() -> None:
    remote = _service("PreferDualStack", ["IPv6", "IPv4"])
    mirror = mirror_service(remote, remote.meta)
    assert (mirror.ip_family_policy, mirror.ip_families) == ("PreferDualStack", ())
    single_stack_local = _service("PreferDualStack", ["IPv4"])
    assert service_change(mirror, single_stack_local) is None
    # Issue 20: kube-service-mirror's SingleStack mirrors of dual-stack remotes change their
    # policy in place (same cluster IP); only a change of the primary family recreates.
    change = service_change(mirror, _service("SingleStack", ["IPv4"]))
    assert change is not None and change[0] == "update"
    back = mirror_service(_service("SingleStack", ["IPv4"]), remote.meta)
    assert service_change(back, _service("PreferDualStack", ["IPv4", "IPv6"]))[0] == "update"
    flip = mirror_service(_service("SingleStack", ["IPv6"]), remote.meta)
    assert service_change(flip, _service("PreferDualStack", ["IPv4", "IPv6"]))[0] == "recreate"


def test_a_target_reference_is_kept_as_given() -> None:
    """A name without a kind stays so (the server stores it so); a kind without a name goes."""
    subsets = [{"addresses": [{"ip": "10.0.0.1", "targetRef": {"name": "p"}},
                              {"ip": "10.0.0.2", "targetRef": {"kind": "Pod"}}],
                "ports": [{"port": 80}]}]  # fmt: skip
    back = subsets_to_api(subsets_from_api(subsets))
    assert back[0]["addresses"] == [
        {"ip": "10.0.0.1", "targetRef": {"name": "p"}},
        {"ip": "10.0.0.2"},
    ]
