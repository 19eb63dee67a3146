"""--config files: what they hold, and the path of whatever is wrong in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksm_sync.config import load
from ksm_sync.errors import UsageError
from ksm_sync.settings import KubeconfigSource, Retirement, TokenSource

GOOD = """
mirrorNamespace: mirrors
local: {kubeconfig: /path/local.kubeconfig, context: ""}
policy: upsert-only
maxDeleteRatio: 0.25
remotes:
- name: east
  prefix: east
  labelSelector: mirror=yes
  kubeconfig: /path/east.kubeconfig
- name: west
  prefix: west
  labelSelector: mirror=yes
  apiURL: https://west.example:6443
  tokenPath: /secrets/west/token
  caURL: file:///secrets/west/ca.crt
global:
  prefix: global
  labelSelector: mirror.global=yes
  includeLocal: true
  unreachableAfter: 2m
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_a_file_with_every_key(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD))
    assert config.mirror_namespace == "mirrors" and config.policy == "upsert-only"
    assert config.max_delete_ratio == 0.25 and config.endpoints_api is None
    assert config.local == KubeconfigSource("/path/local.kubeconfig", None)
    east, west = config.remotes
    assert (east.name, east.prefix, east.label_selector) == ("east", "east", "mirror=yes")
    assert east.credentials == KubeconfigSource("/path/east.kubeconfig", None)
    assert west.credentials == TokenSource(
        "https://west.example:6443", "file:///secrets/west/ca.crt", "/secrets/west/token"
    )
    assert config.global_services is not None
    assert config.global_services.include_local and config.global_services.unreachable_after == 120


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  prefix: west", "  prefix: West"), "remotes[1].prefix: 'West' is invalid"),
        (("  labelSelector: mirror=yes\n  apiURL", "  labelSelector: a=b=c\n  apiURL"),
         "remotes[1].labelSelector: 'a=b=c' is invalid"),
        (("- name: west", "- name: east"), "remotes[1].name: 'east' is already another remote's"),
        (("- name: west", "- name: local"), "remotes[1].name: 'local' must be"),
        (("  prefix: west", "  prefix: east"), "remotes[1].prefix: 'east' is already"),
        (("  prefix: global", "  prefix: east"), "global.prefix: 'east' is a remote's prefix"),
        (("  tokenPath: /secrets/west/token\n", ""), "remotes[1].tokenPath: is required"),
        (("  kubeconfig: /path/east.kubeconfig", "  kubeconfig: /x\n  apiURL: https://x"),
         "remotes[0]: give either kubeconfig"),
        (("  labelSelector: mirror=yes\n  kubeconfig", "  lableSelector: x\n  kubeconfig"),
         "remotes[0].lableSelector: unknown key"),
        (("maxDeleteRatio: 0.25", "maxDeleteRatio: 2"), "maxDeleteRatio: must be a number"),
        (("unreachableAfter: 2m", "unreachableAfter: soon"), "global.unreachableAfter:"),
        (("policy: upsert-only", "policy: upsert-only\nendpointsApi: endpoints"),
         "global: global services are merged from EndpointSlices"),
        # Issue 20: `global` with Service a-web and `global-a` with web share a mirror name.
        (("  prefix: global", "  prefix: east-x"), "can give two Services one mirror name"),
        (("  prefix: east", "  prefix: global-a"), "can give two Services one mirror name"),
        (("policy: upsert-only", "policy: upsert-only\notherPrefixes: [east]"),
         "otherPrefixes[0]: 'east' is this file's own prefix"),
        (("policy: upsert-only", "policy: upsert-only\npruneRetired: yes please"),
         "pruneRetired: must be true or false"),
    ],
)  # fmt: skip
def test_a_bad_field_is_named_by_its_path(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(UsageError) as raised:
        load(path)
    assert str(raised.value).startswith(f"--config {path}: ")
    assert message in str(raised.value)


def test_retired_prefixes_are_looked_for_and_pruned_only_if_asked(tmp_path: Path) -> None:
    assert load(write(tmp_path, GOOD)).retirement == Retirement()
    text = GOOD + "pruneRetired: true\notherPrefixes: [north, south]\n"
    assert load(write(tmp_path, text)).retirement == Retirement(True, ("north", "south"))


@pytest.mark.parametrize(
    ("text", "message"),
    [("remotes: [\n", "not YAML"), ("- a\n", "(top): must be a mapping"),
     ("mirrorNamespace: m\n", "remotes: must be a list of at least one remote")],
)  # fmt: skip
def test_a_file_that_is_not_a_config(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(write(tmp_path, text))
