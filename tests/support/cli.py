"""The real ksm-sync CLI as tests run it: a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 180


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI run: this one, less anything that could pick credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSM_") and k != "KUBECONFIG"}
    env["HOME"] = "/nonexistent"  # no ~/.kube/config by accident
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env["KSM_LISTEN_ADDRESS"] = "127.0.0.1:0"  # loops of parallel tests must not share :8080
    return {**env, **(extra or {})}


def run_cli(
    argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ksm_sync", *argv],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        **kwargs,
    )


def start_cli(
    argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    """The real CLI in the background (for `loop`); the caller stops it."""
    return subprocess.Popen(
        [sys.executable, "-m", "ksm_sync", *argv],
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def read_until(process: subprocess.Popen[str], text: str, timeout: float = CLI_TIMEOUT) -> str:
    """The process's stderr up to the first line holding `text`; killed if it never comes.

    A fixed sleep before a signal raced the first pass on a loaded machine."""
    assert process.stderr is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    read = []
    try:
        for line in process.stderr:
            read.append(line)
            if text in line:
                return "".join(read)
    finally:
        timer.cancel()
    raise AssertionError(f"{text!r} never came:\n{''.join(read)}")


def imported(stderr: str) -> set[str]:
    """The top-level packages a run imported, from its PYTHONPROFILEIMPORTTIME lines."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
