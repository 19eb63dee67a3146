"""Desired mirrors from remote Services: the spec rules users of the Go program rely on."""

from __future__ import annotations

from ksm_sync.mirror import desired_mirrors
from ksm_sync.model import Endpoints, Ref, endpoints_from_api, service_from_api
from ksm_sync.settings import Target


def remote_service(name: str, namespace: str = "shop", **spec: object):
    spec.setdefault("ports", [{"name": "http", "port": 80, "nodePort": 30080}])
    return service_from_api({"metadata": {"name": name, "namespace": namespace}, "spec": spec})


def remote_endpoints(name: str, namespace: str = "shop") -> Endpoints:
    return endpoints_from_api(
        {"metadata": {"name": name, "namespace": namespace},
         "subsets": [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"port": 8080}]}]}
    )  # fmt: skip


def mirrors(*services, endpoints=()):
    return desired_mirrors(services, endpoints, Target("east", "mirrors"))


def test_nodeport_and_loadbalancer_become_plain_clusterip_without_selector() -> None:
    desired, skips = mirrors(
        remote_service("np", type="NodePort"), remote_service("lb", type="LoadBalancer")
    )
    assert skips == []
    for mirror in desired.values():
        assert mirror.service.type == "ClusterIP" and not mirror.service.headless
        assert [p.port for p in mirror.service.ports] == [80]


def test_headless_stays_headless_and_names_carry_prefix_and_namespace() -> None:
    desired, _ = mirrors(remote_service("db", clusterIP="None"))
    mirror = desired["east-db-6d6972726f720a-shop"]
    assert mirror.service.headless
    assert mirror.service.meta.ref == Ref("mirrors", "east-db-6d6972726f720a-shop")
    assert dict(mirror.service.meta.labels) == {
        "mirrored-svc": "true",
        "mirror-svc-prefix-sync": "east",
    }
    assert mirror.remote == Ref("shop", "db")


def test_same_name_in_two_namespaces_gives_two_mirrors() -> None:
    desired, _ = mirrors(remote_service("web", "a"), remote_service("web", "b"))
    assert sorted(desired) == ["east-web-6d6972726f720a-a", "east-web-6d6972726f720a-b"]


def test_endpoints_only_with_their_service() -> None:
    desired, _ = mirrors(
        remote_service("web"), endpoints=[remote_endpoints("web"), remote_endpoints("orphan")]
    )
    assert list(desired) == ["east-web-6d6972726f720a-shop"]
    assert desired["east-web-6d6972726f720a-shop"].endpoints is not None


def test_name_too_long_is_skipped_with_the_remote_and_the_reason() -> None:
    desired, skips = mirrors(remote_service("x" * 50), remote_service("ok"))
    assert list(desired) == ["east-ok-6d6972726f720a-shop"]
    [skip] = skips
    assert skip.remote == Ref("shop", "x" * 50)
    assert "over the limit of 63" in skip.reason and skip.mirror_name in skip.reason


def test_external_name_is_mirrored_as_external_name() -> None:
    desired, _ = mirrors(remote_service("ext", type="ExternalName", externalName="db.example.com"))
    service = desired["east-ext-6d6972726f720a-shop"].service
    assert service.type == "ExternalName" and service.external_name == "db.example.com"


def test_two_remotes_with_one_mirror_name_are_both_skipped() -> None:
    """`c` in `x-6d6972726f720a-y` and `c-6d6972726f720a-x` in `y` both map to one name."""
    desired, skips = mirrors(
        remote_service("c", "x-6d6972726f720a-y"),
        remote_service("c-6d6972726f720a-x", "y"),
        remote_service("web"),
    )
    assert list(desired) == ["east-web-6d6972726f720a-shop"]
    assert sorted(str(s.remote) for s in skips) == ["x-6d6972726f720a-y/c", "y/c-6d6972726f720a-x"]
    assert all("is also the mirror name of" in s.reason for s in skips)
