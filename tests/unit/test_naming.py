"""Mirror names: the exact shape the CoreDNS rewrite of kube-service-mirror users relies on."""

from __future__ import annotations

import pytest

from ksm_sync.naming import mirror_name, mirror_problem, name_problem, prefix_problem


def test_mirror_name_keeps_the_go_shape() -> None:
    assert mirror_name("east", "shop", "web") == "east-web-6d6972726f720a-shop"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("east-web-6d6972726f720a-shop", None),
        ("a" * 63, None),
        ("a" * 64, "64 characters, over the limit of 63"),
        ("east-Web-6d6972726f720a-shop", "not a DNS-1035 label"),
        ("1east", "not a DNS-1035 label"),
        ("east-web-", "not a DNS-1035 label"),
    ],
)
def test_name_problem(name: str, problem: str | None) -> None:
    found = name_problem(name)
    assert (found is None) == (problem is None)
    if problem:
        assert found is not None and problem in found


@pytest.mark.parametrize("prefix", ["east", "eu-west-1", "a"])
def test_good_prefixes(prefix: str) -> None:
    assert prefix_problem(prefix) is None


@pytest.mark.parametrize("prefix", ["", "East", "1east", "east_1", "-east", "e" * 64, "east.x"])
def test_bad_prefixes(prefix: str) -> None:
    assert prefix_problem(prefix) is not None


def test_a_namespace_holding_the_separator_cannot_be_mirrored() -> None:
    """Issue 20: the CoreDNS answer rewrite splits a mirror name at its last separator, so a
    namespace holding it would be answered under another name than the one asked."""
    assert mirror_problem("east", "shop", "web") is None
    assert mirror_problem("east", "shop", "web-6d6972726f720a-x") is None  # in the name: fine
    problem = mirror_problem("east", "a-6d6972726f720a-b", "web")
    assert problem is not None and "another Service" in problem
    assert "over the limit" in (mirror_problem("east", "shop", "w" * 60) or "")
