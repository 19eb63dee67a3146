"""Options: every one from the command line and from its KSM_ variable, the Go spellings, and
a clear error with exit status 2 for each bad input — all through the real CLI."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.support.cli import imported, read_until, run_cli, start_cli
from tests.support.world import World


def settings_line(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if "settings: Settings(" in line]
    return line


@pytest.fixture
def files(world: World, tmp_path: Path) -> dict[str, str]:
    """Kubeconfigs at two paths each, and one file holding both clusters as two contexts each."""
    paths = {}
    for side, cluster in (("local", world.local), ("remote", world.remote)):
        for copy in ("a", "b"):
            path = tmp_path / f"{side}-{copy}.kubeconfig"
            path.write_text(cluster.plane.kubeconfig.read_text())
            paths[f"{side}-{copy}"] = str(path)
    local = json.loads(world.local.plane.kubeconfig.read_text())
    remote = json.loads(world.remote.plane.kubeconfig.read_text())
    merged = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": local["clusters"] + remote["clusters"],
        "users": local["users"] + remote["users"],
        "contexts": [
            *local["contexts"],
            {
                "name": "local-b",
                "context": {**local["contexts"][0]["context"], "namespace": world.mirror_ns},
            },
            *remote["contexts"],
            {"name": "remote-b", "context": remote["contexts"][0]["context"]},
        ],
        "current-context": "local",
    }
    (tmp_path / "both.kubeconfig").write_text(json.dumps(merged))
    paths["both"] = str(tmp_path / "both.kubeconfig")
    return paths


# option, variable, value from the variable, value from the command line, what each gives
OPTIONS = [
    ("--label-selector", "KSM_LABEL_SELECTOR", "x=a", "x=b", "label_selector='{}'"),
    ("--svc-prefix", "KSM_SVC_PREFIX", "pa", "pb", "prefix='{}'"),
    ("--mirror-ns", "KSM_MIRROR_NS", "ns-a", "ns-b", "mirror_namespace='{}'"),
    (
        "--kube-config",
        "KSM_KUBE_CONFIG",
        "@local-a",
        "@local-b",
        "local=KubeconfigSource(path='{}'",
    ),
    (
        "--target-kube-config",
        "KSM_TARGET_KUBE_CONFIG",
        "@remote-a",
        "@remote-b",
        "credentials=KubeconfigSource(path='{}'",
    ),
    ("--policy", "KSM_POLICY", "upsert-only", "sync", "policy='{}'"),
    ("--max-delete-ratio", "KSM_MAX_DELETE_RATIO", "0.25", "0.75", "max_delete_ratio={}"),
    ("--resync-period", "KSM_RESYNC_PERIOD", "90s", "1m0s", "resync_period={}"),
    ("--pass-timeout", "KSM_PASS_TIMEOUT", "1m", "2m30s", "pass_timeout={}"),
    ("--request-timeout", "KSM_REQUEST_TIMEOUT", "5s", "7s", "request_timeout={}"),
    ("--concurrency", "KSM_CONCURRENCY", "3", "5", "concurrency={}"),
]
SECONDS = {"90s": "90.0", "1m0s": "60.0", "1m": "60.0", "2m30s": "150.0", "5s": "5.0", "7s": "7.0"}


def base(world: World, files: dict[str, str], skip: str) -> list[str]:
    args = {
        "--label-selector": world.selector,
        "--svc-prefix": world.prefix,
        "--mirror-ns": world.mirror_ns,
        "--kube-config": files["local-a"],
        "--target-kube-config": files["remote-a"],
    }
    out = ["--dry-run", "--log-level", "debug"]
    for option, value in args.items():
        if option != skip:
            out += [option, value]
    return out


@pytest.mark.parametrize(("option", "variable", "from_env", "from_cli", "shows"), OPTIONS)
def test_each_option_from_its_variable_and_the_command_line_wins(
    world: World,
    files: dict[str, str],
    option: str,
    variable: str,
    from_env: str,
    from_cli: str,
    shows: str,
) -> None:
    def value(v: str) -> str:
        return files[v[1:]] if v.startswith("@") else v

    def expected(v: str) -> str:
        return shows.format(SECONDS.get(v, value(v)))

    env_only = run_cli(["once", *base(world, files, option)], env={variable: value(from_env)})
    assert env_only.returncode in (0, 1), env_only.stderr
    assert expected(from_env) in settings_line(env_only.stderr)

    both = run_cli(
        ["once", *base(world, files, option), option, value(from_cli)],
        env={variable: value(from_env)},
    )
    assert both.returncode in (0, 1), both.stderr
    assert expected(from_cli) in settings_line(both.stderr)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("false", False),
        ("0", False),
        ("F", False),
        ("FALSE", False),
        ("true", True),
        ("1", True),
        ("T", True),
        ("True", True),
    ],
)
def test_svc_sync_variable_takes_go_booleans(
    world: World, files: dict[str, str], value: str, expected: bool
) -> None:
    result = run_cli(["once", *base(world, files, "")], env={"KSM_SVC_SYNC": value})
    assert f"svc_sync={expected}" in settings_line(result.stderr)
    flag = "--svc-sync" if not expected else "--no-svc-sync"
    wins = run_cli(["once", *base(world, files, ""), flag], env={"KSM_SVC_SYNC": value})
    assert f"svc_sync={not expected}" in settings_line(wins.stderr)


def test_dry_run_log_level_and_log_format_from_variables(
    world: World, files: dict[str, str]
) -> None:
    args = base(world, files, "")
    args.remove("--dry-run")
    args = [a for a in args if a not in ("--log-level", "debug")]
    result = run_cli(
        ["once", *args],
        env={"KSM_DRY_RUN": "true", "KSM_LOG_LEVEL": "debug", "KSM_LOG_FORMAT": "json"},
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any("dry_run=True" in line["message"] for line in lines)
    assert world.writes() == []
    quiet = run_cli(
        ["once", *args, "--log-level", "error", "--log-format", "text"],
        env={"KSM_DRY_RUN": "true", "KSM_LOG_LEVEL": "debug", "KSM_LOG_FORMAT": "json"},
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_contexts_of_one_kubeconfig_and_kubeconfig_variable(
    world: World, files: dict[str, str]
) -> None:
    world.service("web")
    args = [
        "--label-selector",
        world.selector,
        "--svc-prefix",
        world.prefix,
        "--kube-context",
        "local-b",
        "--target-kube-config",
        files["both"],
        "--target-kube-context",
        "remote-b",
    ]

    result = run_cli(["once", *args], env={"KUBECONFIG": files["both"]})

    assert result.returncode == 0, result.stderr
    assert f"mirror namespace '{world.mirror_ns}'" in result.stderr  # the context's namespace
    assert world.mirror_name("web") in world.mirrors()


def test_go_spellings_give_the_same_settings(world: World, files: dict[str, str]) -> None:
    typer_style = [
        "--label-selector",
        world.selector,
        "--svc-prefix",
        world.prefix,
        "--no-svc-sync",
        "--resync-period",
        "1h0m0s",
        "--kube-config",
        files["local-a"],
        "--target-kube-config",
        files["remote-a"],
        "--mirror-ns",
        world.mirror_ns,
    ]
    go = [
        f"-label-selector={world.selector}",
        f"--svc-prefix={world.prefix}",
        "-svc-sync=false",
        "-resync-period=1h0m0s",
        "-kube-config",
        files["local-a"],
        f"-target-kube-config={files['remote-a']}",
        "-mirror-ns",
        world.mirror_ns,
    ]
    debug = ["--dry-run", "--log-level", "debug"]
    a = run_cli(["once", *typer_style, *debug])
    b = run_cli(["once", *go, *debug])
    strip = re.compile(r"^\S+ ")  # the timestamp
    assert strip.sub("", settings_line(a.stderr)) == strip.sub("", settings_line(b.stderr))


def test_go_spellings_without_a_command_run_loop(world: World, files: dict[str, str]) -> None:
    go = [
        f"-label-selector={world.selector}",
        f"-svc-prefix={world.prefix}",
        f"-kube-config={files['local-a']}",
        f"-target-kube-config={files['remote-a']}",
        f"-mirror-ns={world.mirror_ns}",
        "-resync-period=1h0m0s",
    ]
    process = start_cli(go)
    started = read_until(process, "pass done")
    process.send_signal(signal.SIGTERM)
    stderr = started + process.stderr.read()  # not communicate(): it skips what was read
    assert process.wait(timeout=30) == 0
    assert " loop: " in started and "every 1h0m0s" in started
    # Issue 22: the Go program's -resync-period was its watch cache's; here it is the time
    # between passes, and an hour of it is said, not left to be found out.
    assert "kube-service-mirror's -resync-period (default 1h) was only its watch" in stderr
    quick = start_cli([*go[:-1], "-resync-period=1m"])
    quick_started = read_until(quick, "pass done")
    quick.send_signal(signal.SIGTERM)
    assert "watch cache" not in quick_started + quick.stderr.read()
    assert quick.wait(timeout=30) == 0


BAD = [
    ("missing selector", ["--svc-prefix", "p"], None, "Missing option '--label-selector'"),
    ("missing prefix", ["--label-selector", "a=b"], None, "Missing option '--svc-prefix'"),
    ("both remotes", ["--remote-api-url", "https://x"], None, "either --target-kube-config"),
    ("no remote", ["--target-kube-config", ""], None, "no remote cluster"),
    (
        "bad selector",
        ["--label-selector", "a=b=c"],
        None,
        "--label-selector (KSM_LABEL_SELECTOR) is invalid",
    ),
    ("bad prefix", ["--svc-prefix", "East"], None, "--svc-prefix (KSM_SVC_PREFIX) is invalid"),
    (
        "bad duration",
        ["--resync-period", "10"],
        None,
        "--resync-period (KSM_RESYNC_PERIOD) is invalid: '10'",
    ),
    (
        "bad variable duration",
        [],
        {"KSM_PASS_TIMEOUT": "soon"},
        "--pass-timeout (KSM_PASS_TIMEOUT) is invalid",
    ),
    (
        "no kubeconfig",
        ["--kube-config", "/nope/config"],
        None,
        "--kube-config /nope/config: no such file",
    ),
    ("no context", ["--kube-context", "nope"], None, "--kube-context 'nope' is not a context of"),
    (
        "no target context",
        ["--target-kube-context", "nope"],
        None,
        "--target-kube-context 'nope' is not a context",
    ),
    ("bad policy", ["--policy", "yolo"], None, "Invalid value for '--policy'"),
    ("zero loop period", ["--resync-period", "0"], None, "must be longer than 0s for loop"),
    ("bad ratio", ["--max-delete-ratio", "2"], None, "Invalid value for '--max-delete-ratio'"),
    ("bad bool variable", [], {"KSM_SVC_SYNC": "maybe"}, "KSM_SVC_SYNC"),
]


@pytest.mark.parametrize(("case", "args", "env", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_exit_2_with_a_clear_message(
    world: World, case: str, args: list[str], env: dict[str, str] | None, message: str
) -> None:
    defaults = dict(zip(world.args()[::2], world.args()[1::2], strict=True))
    given = dict(zip(args[::2], args[1::2], strict=True))
    if case.startswith("missing"):
        argv = args
    else:
        merged = {**defaults, **given}
        if case == "no remote":
            merged.pop("--target-kube-config")
        argv = [a for pair in merged.items() for a in pair]
    command = "loop" if "loop" in case else "once"
    result = run_cli([command, *argv], env={**(env or {}), "COLUMNS": "200"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert world.writes() == []


def test_once_loads_metrics_and_retries_only_when_it_uses_them(world: World) -> None:
    """Issue 20: a CronJob's `once` paid the metrics (and /readyz's HTTP server, and the
    retry library) on every run; it loads them only to write or push metrics, or to retry."""
    world.service("web")
    plain = world.run(env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert plain.returncode == 0, plain.stderr
    assert "kubernetes" in imported(plain.stderr)
    assert not {"prometheus_client", "tenacity"} & imported(plain.stderr)
    assert "http.server" not in plain.stderr
    metrics = Path(world.mirror_ns + ".prom")
    try:
        written = world.run("--metrics-file", str(metrics), env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert written.returncode == 0 and "prometheus_client" in imported(written.stderr)
        assert "ksm_sync_passes_total" in metrics.read_text()
    finally:
        metrics.unlink(missing_ok=True)
