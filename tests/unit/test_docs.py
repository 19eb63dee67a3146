"""The documentation against the code: the generated CLI reference, every key of the config file,
every metric and its labels, one example selector, and relative links that lead somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ksm_sync import config
from ksm_sync.metrics import Metrics
from ksm_sync.report import Report
from tests.support.cli import REPO

DOCS = REPO / "docs"
REFERENCE = DOCS / "reference"
PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *DOCS.rglob("*.md")])
GENERATE = ".venv/bin/python scripts/cli-reference > docs/reference/cli.md"


def test_the_cli_reference_is_what_the_generator_prints() -> None:
    printed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli-reference")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    written = (REFERENCE / "cli.md").read_text()
    assert written == printed, f"docs/reference/cli.md is out of date: run `{GENERATE}`"


def sections(text: str) -> dict[str, str]:
    """A page's `## ` sections by heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize(
    ("heading", "keys"),
    [
        ("Top level", config.TOP),
        ("Top level", config.LOCAL),  # in the row of `local`
        ("`remotes[]`", config.REMOTE),
        ("`global`", config.GLOBAL),
        ("`clusterSet`", config.CLUSTER_SET),
    ],
)
def test_every_key_of_the_config_file_is_documented(heading: str, keys: set[str]) -> None:
    section = sections((REFERENCE / "config-file.md").read_text())[heading]
    missing = sorted(key for key in keys if f"`{key}`" not in section)
    assert not missing, f"docs/reference/config-file.md, section {heading}: {missing}"


def exported() -> dict[str, set[str]]:
    """Every series name ksm-sync exports (histograms by their own name), with its labels."""
    metrics = Metrics(version="0", prefix="p", mirror_namespace="m", remotes=("remote",),
                      resync_period=60.0)  # fmt: skip
    metrics.record(Report(remote_errors={"remote": "unreachable"}))
    counts = {"created": 1, "unchanged": 1}
    metrics.record(Report(counts=counts, by_remote={"remote": counts}, retired={"old": 2},
                          objects={"remote_services": 1}))  # fmt: skip
    metrics.request("local", "local", "list", 200, 0.01)
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            name = family.name if family.type == "histogram" else sample.name
            names.setdefault(name, set()).update(set(sample.labels) - {"le"})
    return names


def test_every_metric_and_its_labels_are_documented() -> None:
    rows = {
        match[1]: match[0]
        for match in re.findall(r"^(\| `(ksm_sync_\w+)` \|.*)$",
                                (REFERENCE / "metrics.md").read_text(), flags=re.MULTILINE)
    }  # fmt: skip
    for name, labels in exported().items():
        assert name in rows, f"docs/reference/metrics.md has no row for {name}"
        missing = sorted(label for label in labels if f"`{label}`" not in rows[name])
        assert not missing, f"docs/reference/metrics.md, {name}: labels {missing}"


SELECTORS = {"ksm-sync/mirror=true", "ksm-sync/global=true"}
SELECTOR = re.compile(
    r"(?:-label-selector[ =]|labelSelector: |KSM_LABEL_SELECTOR.*\n\s*value: |label selector ')"
    r"([^\s'`,]+)"
)


def test_examples_use_one_label_selector() -> None:
    """ksm-sync/mirror=true (and ksm-sync/global=true for global services), everywhere."""
    files = [*PAGES, REPO / "cronjob.yaml", *(REPO / "deploy").rglob("*.yaml")]
    found = {
        f"{path.relative_to(REPO)}: {value}"
        for path in files
        for value in SELECTOR.findall(path.read_text())
        if "=" in value and value not in SELECTORS
    }
    assert not found


CODE = re.compile(r"^```.*?^```|`[^`\n]*`", flags=re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]: (\S+)", flags=re.MULTILINE)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    found: set[str] = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files_and_headings_that_exist(page: Path) -> None:
    broken = []
    for inline, reference in LINK.findall(CODE.sub("", page.read_text())):
        target = inline or reference
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            broken.append(f"{target}: no such file")
        elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.relative_to(REPO)}: {broken}"
