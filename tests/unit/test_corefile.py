"""The CoreDNS server block, read as CoreDNS's rewrite plugin reads it.

Its rules are applied here the way the plugin applies them (regular expressions, `{n}` replaced
by group n, an unmatched group by nothing), so that which names map where is checked without a
server; tests/cluster/test_dns.py asks a real CoreDNS.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksm_sync.corefile import server_block
from ksm_sync.naming import mirror_name
from tests.support.cli import REPO, run_cli

BLOCK = server_block("east", "mirrors")
DESIGN = (REPO / "docs" / "design.md").read_text()


def rules(block: str, kind: str) -> list[tuple[str, str]]:
    """(pattern, replacement) of the `name regex`, `answer name` or `answer value` lines."""
    prefix = {"question": "name regex ", "name": "answer name ", "value": "answer value "}[kind]
    lines = [line.strip() for line in block.splitlines()]
    pairs = [line.removeprefix(prefix).split(" ") for line in lines if line.startswith(prefix)]
    return [(pattern, replacement) for pattern, replacement in pairs]


def substitute(name: str, pattern: str, replacement: str) -> str | None:
    if not (match := re.search(pattern, name)):
        return None
    for index, group in enumerate([match.group(0), *match.groups()]):
        replacement = replacement.replace(f"{{{index}}}", group or "")
    return replacement


def asked(name: str, block: str = BLOCK) -> str:
    """The question CoreDNS passes on: the first `rewrite stop` rule that matches rewrites it."""
    for pattern, replacement in rules(block, "question"):
        if (rewritten := substitute(name, pattern, replacement)) is not None:
            return rewritten
    return name


def answered(name: str, part: str = "name") -> str:
    """An owner name (or a record's value) in the answer: every answer rule, last first."""
    for pattern, replacement in reversed(rules(BLOCK, part)):
        name = substitute(name, pattern, replacement) or name
    return name


LOCAL = f"{mirror_name('east', 'shop', 'web')}.mirrors.svc.cluster.local."


@pytest.mark.parametrize(
    ("question", "mirror"),
    [
        ("web.shop.svc.cluster.east.", LOCAL),
        ("pg-0.web.shop.svc.cluster.east.", f"pg-0.{LOCAL}"),
        ("_http._tcp.web.shop.svc.cluster.east.", f"_http._tcp.{LOCAL}"),
    ],
)
def test_each_shape_is_asked_of_the_mirror_and_answered_under_the_name_asked(
    question: str, mirror: str
) -> None:
    assert asked(question) == mirror
    assert answered(mirror) == question


@pytest.mark.parametrize(
    "question",
    [
        "shop.svc.cluster.east.",  # a namespace
        "a.b.web.shop.svc.cluster.east.",  # too deep
        "_http.web.shop.svc.cluster.east.",  # half an SRV name
        "web.shop.pod.cluster.east.",
        "web.shop.svc.cluster.eastern.",
        "web.shop.svc.cluster.east.example.",
        "web.shop.svc.cluster.local.",
    ],
)
def test_other_names_are_left_alone(question: str) -> None:
    """Left alone, a name under cluster.east gets NXDOMAIN from the template; the others are
    not this block's."""
    assert asked(question) == question


def test_srv_targets_and_their_addresses_come_back_under_the_remote_domain() -> None:
    assert answered(LOCAL, "value") == "web.shop.svc.cluster.east."
    assert answered(f"pg-1.{LOCAL}", "value") == "pg-1.web.shop.svc.cluster.east."
    assert answered(f"pg-1.{LOCAL}") == "pg-1.web.shop.svc.cluster.east."


def test_a_negative_answer_names_the_zone_that_was_asked() -> None:
    assert answered("cluster.local.") == "cluster.east."


def test_other_prefixes_mirrors_and_other_names_are_not_rewritten_back() -> None:
    for name in (
        f"{mirror_name('west', 'shop', 'web')}.mirrors.svc.cluster.local.",
        f"{mirror_name('east', 'shop', 'web')}.other.svc.cluster.local.",
        "kubernetes.default.svc.cluster.local.",
        "db.example.com.",
    ):
        assert answered(name) == name
        assert answered(name, "value") == name


label = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(svc=label, ns=label, hostname=label, port=label)
def test_every_shape_goes_there_and_back(svc: str, ns: str, hostname: str, port: str) -> None:
    for head in ("", f"{hostname}.", f"_{port}._tcp."):
        question = f"{head}{svc}.{ns}.svc.cluster.east."
        local = f"{head}{mirror_name('east', ns, svc)}.mirrors.svc.cluster.local."
        assert asked(question) == local
        assert answered(local) == question


def test_other_domains_and_the_kubernetes_plugin() -> None:
    block = server_block("east", "mirrors", "east.example", "k8s.internal")
    assert block.startswith("east.example {\n")
    assert asked("web.shop.svc.east.example.", block) == (
        f"{mirror_name('east', 'shop', 'web')}.mirrors.svc.k8s.internal."
    )
    assert "    kubernetes k8s.internal {\n" in block
    assert "        labels mirrored-svc=true,mirror-svc-prefix-sync=east\n" in block
    assert "    template ANY ANY east.example {\n        rcode NXDOMAIN\n" in block


def test_in_cluster_unless_told_how_to_reach_the_cluster() -> None:
    assert "kubeconfig" not in BLOCK and "bind" not in BLOCK
    block = server_block("east", "mirrors", bind="127.0.0.1", kubeconfig="/k/local.kubeconfig")
    assert "\n    bind 127.0.0.1\n" in block
    assert "\n        kubeconfig /k/local.kubeconfig\n" in block


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("East", "mirrors"), "prefix is invalid"),
        (("east", "Mirrors"), "not a namespace name"),
        (("east", "mirrors", "cluster..east"), "remote domain"),
        (("east", "mirrors", None, "cluster_local"), "cluster domain"),
        # Issue 20: a block for the cluster's own domain (or one above or inside it) would
        # rewrite every name of the cluster.
        (("east", "mirrors", "cluster.local"), "overlaps the cluster domain"),
        (("local", "mirrors"), "overlaps the cluster domain"),
        (("east", "mirrors", "local"), "overlaps the cluster domain"),
        (("east", "mirrors", "svc.cluster.local"), "overlaps the cluster domain"),
        (("east", "mirrors", "east.example", "example"), "overlaps the cluster domain"),
    ],
)
def test_names_that_cannot_be_part_of_a_dns_name_are_refused(
    args: tuple[str, ...], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        server_block(*args)


def test_the_cli_prints_the_block_and_the_design_page_shows_it() -> None:
    result = run_cli(["corefile", "--svc-prefix", "east", "--mirror-ns", "mirrors"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == BLOCK
    assert f"```\n{BLOCK}```" in DESIGN
    refused = run_cli(["corefile", "--svc-prefix", "east", "--mirror-ns", "Mirrors"])
    assert refused.returncode == 2 and "not a namespace name" in refused.stderr
    outage = run_cli(["corefile", "--svc-prefix", "east", "--mirror-ns", "mirrors",
                      "--remote-domain", "cluster.local"])  # fmt: skip
    assert outage.returncode == 2 and outage.stdout == ""
    assert "overlaps the cluster domain 'cluster.local'" in outage.stderr
