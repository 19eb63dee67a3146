"""The README's quick start, run word for word: it must end with a name answering through CoreDNS.

The shell block under "## Quick start" is run as it stands, from the repository as a user's clone,
with its temporary directory under the test's own. It starts control planes of its own (and the
binaries the other tests use, from the cache), so it needs none of the session's planes.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.support import controlplane
from tests.support.cli import REPO

# The mirror's cluster IP comes from the local plane's service range, 10.112.0.0/16.
ANSWER = re.compile(r"^web\.shop\.svc\.cluster\.remote\. 5 IN A 10\.112\.\d+\.\d+$", re.MULTILINE)


def quick_start() -> str:
    """The first ```sh block of the README's section "Quick start"."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert blocks, "the README's Quick start has no ```sh block"
    return blocks[0]


def test_the_quick_start_ends_with_a_name_answering_through_coredns(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KSM_", "VIRTUAL_ENV")) and k != "KUBECONFIG"}  # fmt: skip
    env["TMPDIR"] = str(tmp_path)  # where its `mktemp -d` goes, for the cleanup below
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", quick_start()],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        for directory in tmp_path.glob("tmp.*"):  # what the block did not get to stop
            controlplane.down(directory)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert ANSWER.search(done.stdout), output
    assert "pass done: created=1 " in done.stderr, output
    assert not list(tmp_path.glob("tmp.*")), "scripts/clusters down left its directory"
