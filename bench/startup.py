"""python -m bench.startup [--runs 15]: the start-up every run of a command pays, no cluster.

Whole processes of `ksm-sync --help` and `ksm-sync corefile`, and the imports of a `once`
without metrics (what it loads before its first request), each timed --runs times; medians
and minimums. Bytecode is written and reused, as the image's install compiles it. Each run
starts outside the repository, so `ksm_sync` comes from the virtual environment's install, not
the current directory: to compare two commits, run it in a checkout (and venv) of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ONCE_IMPORTS = "import ksm_sync.cli, ksm_sync.sync, ksm_sync.config, ksm_sync.credentials"
CASES = {
    "--help": ["-m", "ksm_sync", "--help"],
    "corefile": ["-m", "ksm_sync", "corefile", "--svc-prefix", "east", "--mirror-ns", "m"],
    "once imports": ["-c", ONCE_IMPORTS],
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    seconds: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(args.runs + 1):  # the first round writes the bytecode, and is not counted
        for case, command in CASES.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, *command], env=env, capture_output=True, check=True,
                           cwd=tempfile.gettempdir())  # fmt: skip
            seconds[case].append(time.perf_counter() - started)
    for case, times in seconds.items():
        kept = times[1:]
        print(f"{case:<13} median {statistics.median(kept) * 1000:5.0f} ms  "
              f"min {min(kept) * 1000:5.0f} ms  ({args.runs} runs)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
