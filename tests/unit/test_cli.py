"""The command line without a cluster: Go spellings, help, and the reference's option tables."""

from __future__ import annotations

import inspect

import pytest

from ksm_sync.cli import _options
from ksm_sync.go_flags import go_style
from tests.support.cli import REPO, imported, run_cli


@pytest.mark.parametrize(
    ("argv", "variable"),
    [
        (["-svc-sync=false", "-x"], ["--no-svc-sync", "-x"]),
        (["once", "-label-selector", "a=b"], ["once", "--label-selector", "a=b"]),
        (["once", "-svc-sync=true", "-dry-run=false"], ["once", "--svc-sync"]),
        (["-h"], ["-h"]),
        (["once", "--kube-context", "-dry-run"], ["once", "--kube-context", "-dry-run"]),
        (
            ["once", "-kube-context", "-svc-sync=false"],
            ["once", "--kube-context", "-svc-sync=false"],
        ),
        (["once", "-svc-sync", "-dry-run"], ["once", "--svc-sync", "--dry-run"]),
        (["once", "--", "-dry-run"], ["once", "--", "-dry-run"]),
    ],
)
def test_go_style_rewrites(argv: list[str], variable: list[str]) -> None:
    expected = ["loop", *variable] if argv[0].startswith("-") and argv[0] != "-h" else variable
    assert go_style(argv, _options) == expected


def test_help_groups_options_and_shows_variables() -> None:
    result = run_cli(["once", "--help"], env={"COLUMNS": "200"})
    assert result.returncode == 0
    for heading in ("Local cluster", "Remote cluster", "Mirroring", "Output"):
        assert heading in result.stdout
    for variable in (
        "KSM_LABEL_SELECTOR",
        "KSM_SVC_SYNC",
        "KSM_RESYNC_PERIOD",
        "KSM_REMOTE_CA_URL",
        "KSM_REMOTE_SERVICE_ACCOUNT_TOKEN",
    ):
        assert variable in result.stdout
    assert "default: 1h0m0s" in result.stdout


def test_cli_reference_documents_every_option_and_variable() -> None:
    reference = (REPO / "docs" / "reference" / "cli.md").read_text()
    for param in inspect.signature(_options).parameters.values():
        option = "--" + param.name.replace("_", "-")
        assert f"| `{option}" in reference, option
        if param.name != "remote_sa_token_path":
            assert f"`KSM_{param.name.upper()}`" in reference, param.name


HEAVY = {"kubernetes", "prometheus_client", "tenacity", "yaml", "urllib3"}


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["corefile", "--svc-prefix", "east", "--mirror-ns", "m"]]
)
def test_commands_that_need_no_cluster_load_no_client(argv: list[str]) -> None:
    """Issue 20: every run paid the imports of the Kubernetes client, the metrics and the
    retries, whatever the command; these need none of them."""
    result = run_cli(argv, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    assert not HEAVY & imported(result.stderr)
