"""The command line: parse, validate, build Settings, run passes, map reports to exit statuses.

Every option also comes from its KSM_ variable (the command line wins), and the Go
program's spellings (`-label-selector x`, `-svc-sync=false`) are accepted unchanged.

Each command imports what it uses when it runs: a CronJob pays the start-up of every `once`,
and `--help`, `--version` and `corefile` need neither the Kubernetes client nor the metrics.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from loguru import logger

from ksm_sync import __version__, logs
from ksm_sync.duration import format_duration, parse_duration
from ksm_sync.errors import Unavailable, UsageError
from ksm_sync.go_flags import go_style
from ksm_sync.naming import prefix_problem
from ksm_sync.selector import selector_problem
from ksm_sync.settings import KubeconfigSource, Remote, Settings, TokenSource

if TYPE_CHECKING:
    from ksm_sync.metrics import Metrics
    from ksm_sync.report import Report
    from ksm_sync.server import Server
    from ksm_sync.sync import PassState

TOKEN_VARIABLE = "KSM_REMOTE_SERVICE_ACCOUNT_TOKEN"
SLOW_PERIOD = 600.0  # seconds: a longer loop period is worth a warning (a migration trap)
REMOTE_NAME = "remote"  # the one remote of the options, in messages and metrics
LOCAL, REMOTE, MIRRORING, OUTPUT = "Local cluster", "Remote cluster", "Mirroring", "Output"
METRICS = "Metrics"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warn = "warn"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class PolicyName(StrEnum):
    sync = "sync"
    upsert_only = "upsert-only"


class EndpointsApiName(StrEnum):
    endpointslices = "endpointslices"
    endpoints = "endpoints"


def _options(
    label_selector: Annotated[str | None, typer.Option(
        envvar="KSM_LABEL_SELECTOR", rich_help_panel=MIRRORING, show_default=False,
        help="(required, unless --config) Label selector of the remote Services (and their "
        "endpoints) to mirror.")] = None,
    svc_prefix: Annotated[str | None, typer.Option(
        envvar="KSM_SVC_PREFIX", rich_help_panel=MIRRORING, show_default=False,
        help="(required, unless --config) Prefix of mirror names "
        "(<prefix>-<name>-6d6972726f720a-<namespace>) and value of their mirror-svc-prefix-sync "
        "label.")] = None,
    config: Annotated[str | None, typer.Option(
        envvar="KSM_CONFIG", rich_help_panel=MIRRORING, show_default=False,
        help="YAML file of several remotes (and global services), instead of the remote "
        "options: see docs/several-remotes.md.")] = None,
    kube_config: Annotated[str | None, typer.Option(
        envvar="KSM_KUBE_CONFIG", rich_help_panel=LOCAL, show_default=False,
        help="Kubeconfig of the local cluster. Default: KUBECONFIG, then in-cluster, "
        "then ~/.kube/config.")] = None,
    kube_context: Annotated[str | None, typer.Option(
        envvar="KSM_KUBE_CONTEXT", rich_help_panel=LOCAL, show_default=False,
        help="Context of the local kubeconfig. Default: its current context.")] = None,
    mirror_ns: Annotated[str | None, typer.Option(
        envvar="KSM_MIRROR_NS", rich_help_panel=LOCAL, show_default=False,
        help="Local namespace of the mirrors. Default: the namespace of the local "
        "credentials (service account, else kubeconfig context, else default).")] = None,
    target_kube_config: Annotated[str | None, typer.Option(
        envvar="KSM_TARGET_KUBE_CONFIG", rich_help_panel=REMOTE, show_default=False,
        help="Kubeconfig of the remote cluster (or use --remote-api-url).")] = None,
    target_kube_context: Annotated[str | None, typer.Option(
        envvar="KSM_TARGET_KUBE_CONTEXT", rich_help_panel=REMOTE, show_default=False,
        help="Context of the remote kubeconfig. Default: its current context.")] = None,
    remote_api_url: Annotated[str | None, typer.Option(
        envvar="KSM_REMOTE_API_URL", rich_help_panel=REMOTE, show_default=False,
        help="Remote API server URL, with a bearer token and --remote-ca-url.")] = None,
    remote_ca_url: Annotated[str | None, typer.Option(
        envvar="KSM_REMOTE_CA_URL", rich_help_panel=REMOTE, show_default=False,
        help="Where to fetch the remote CA, every pass: https://, file:// or a path "
        "(http:// only with --insecure-ca-over-http).")] = None,
    insecure_ca_over_http: Annotated[bool, typer.Option(
        "--insecure-ca-over-http", envvar="KSM_INSECURE_CA_OVER_HTTP", rich_help_panel=REMOTE,
        help="Accept a --remote-ca-url over plain http: whoever can change that answer can "
        "swap the CA and read the bearer token.")] = False,
    remote_sa_token_path: Annotated[str | None, typer.Option(
        rich_help_panel=REMOTE, show_default=False,
        help=f"File holding the remote bearer token, read every pass. Else the token "
        f"value from {TOKEN_VARIABLE}.")] = None,
    svc_sync: Annotated[bool, typer.Option(
        "--svc-sync/--no-svc-sync", envvar="KSM_SVC_SYNC", rich_help_panel=MIRRORING,
        help="Delete mirrors whose remote Service is gone. With --no-svc-sync, `once` deletes "
        "nothing and `loop` only mirrors whose remote it saw disappear.")] = True,
    policy: Annotated[PolicyName, typer.Option(
        envvar="KSM_POLICY", rich_help_panel=MIRRORING,
        help="sync: create, update and delete; upsert-only: never delete.")] = PolicyName.sync,
    endpoints_api: Annotated[EndpointsApiName, typer.Option(
        envvar="KSM_ENDPOINTS_API", rich_help_panel=MIRRORING,
        help="endpointslices: read the remote's EndpointSlices, write the mirrors' own (what "
        "CoreDNS and kube-proxy read). endpoints: Endpoints in, Endpoints out, as "
        "kube-service-mirror did. Switching replaces the other kind without a gap.")
    ] = EndpointsApiName.endpointslices,
    max_delete_ratio: Annotated[float, typer.Option(
        envvar="KSM_MAX_DELETE_RATIO", rich_help_panel=MIRRORING, min=0.0, max=1.0,
        help="Deletion guard: a pass that would delete more than this share of the mirrors "
        "(when more than 5 exist) deletes nothing and exits 1. 1 turns it off.")] = 0.5,
    resync_period: Annotated[str, typer.Option(
        envvar="KSM_RESYNC_PERIOD", rich_help_panel=MIRRORING,
        help="Time between passes of `loop` (Go duration: 1h0m0s, 90s, 1m30s).")] = "1h0m0s",
    pass_timeout: Annotated[str, typer.Option(
        envvar="KSM_PASS_TIMEOUT", rich_help_panel=MIRRORING,
        help="Longest a pass may take, retries included (Go duration).")] = "5m0s",
    request_timeout: Annotated[str, typer.Option(
        envvar="KSM_REQUEST_TIMEOUT", rich_help_panel=MIRRORING,
        help="Longest wait for one API answer before it is retried (Go duration).")] = "30s",
    concurrency: Annotated[int, typer.Option(
        envvar="KSM_CONCURRENCY", rich_help_panel=MIRRORING, min=1, max=256,
        help="Writes in flight at once against the local API server.")] = 16,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", envvar="KSM_DRY_RUN", rich_help_panel=MIRRORING,
        help="Observe and plan, print the plan, write nothing.")] = False,
    log_level: Annotated[LogLevel, typer.Option(
        envvar="KSM_LOG_LEVEL", rich_help_panel=OUTPUT, help="debug, info, warn, error.")
    ] = LogLevel.info,
    log_format: Annotated[LogFormat, typer.Option(
        envvar="KSM_LOG_FORMAT", rich_help_panel=OUTPUT,
        help="text for people, json for log pipelines (one object per line).")] = LogFormat.text,
    listen_address: Annotated[str, typer.Option(
        envvar="KSM_LISTEN_ADDRESS", rich_help_panel=METRICS,
        help="`loop` serves /metrics, /healthz and /readyz here (host:port or :port; "
        "port 0 picks a free one; '' serves nothing).")] = ":8080",
    metrics_file: Annotated[str | None, typer.Option(
        envvar="KSM_METRICS_FILE", rich_help_panel=METRICS, show_default=False,
        help="After every pass, write the metrics to this file, atomically (node-exporter "
        "textfile collector: a *.prom file in its directory).")] = None,
    pushgateway_url: Annotated[str | None, typer.Option(
        envvar="KSM_PUSHGATEWAY_URL", rich_help_panel=METRICS, show_default=False,
        help="After every pass, push the metrics to this Pushgateway (job ksm-sync, grouped "
        "by prefix and mirror namespace).")] = None,
) -> None:  # fmt: skip
    """Template of the options every command takes; `once` and `loop` share its signature."""


app = typer.Typer(
    name="ksm-sync",
    help="Mirror Services and Endpoints of a remote Kubernetes cluster into one local "
    "namespace.\n\n"
    "Each pass lists the labelled remote Services and Endpoints and the local mirrors, plans "
    "the difference and applies it. Exit status: 0 all mirrored; 1 something skipped, in "
    "conflict or failed; 2 bad input; 3 the pass could not run.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# The options that describe the one remote; --config describes the remotes instead.
REMOTE_OPTIONS = ("label_selector", "svc_prefix", "target_kube_config", "target_kube_context",
                  "remote_api_url", "remote_ca_url", "remote_sa_token_path",
                  "insecure_ca_over_http")  # fmt: skip
# Options a config file may set too (its key, and the Config field): given twice, which one
# would win? Neither: it is refused.
IN_CONFIG = {
    "mirror_ns": ("mirrorNamespace", "mirror_namespace"),
    "kube_config": ("local", "local"),
    "kube_context": ("local", "local"),
    "policy": ("policy", "policy"),
    "max_delete_ratio": ("maxDeleteRatio", "max_delete_ratio"),
    "endpoints_api": ("endpointsApi", "endpoints_api"),
}


def _name(option: str) -> str:
    """An option as a user spells it: `--svc-prefix (KSM_SVC_PREFIX)`."""
    flag = "--" + option.replace("_", "-")
    return flag if option == "remote_sa_token_path" else f"{flag} (KSM_{option.upper()})"


def build_settings(options: dict[str, Any], given: Callable[[str], bool]) -> Settings:
    """Validates every option before anything is touched; UsageError names the culprit.

    given(option) says whether the user set it (command line or variable), not a default.
    """
    from ksm_sync import config, credentials

    file = config.load(options["config"]) if options["config"] else None
    if file is not None:
        if clash := [_name(o) for o in REMOTE_OPTIONS if given(o)]:
            raise UsageError(
                f"--config {options['config']} describes the remotes: drop {', '.join(clash)}"
            )
        for option, (key, field) in IN_CONFIG.items():
            if given(option) and getattr(file, field) is not None:
                raise UsageError(
                    f"{key} is set in --config {options['config']} and by {_name(option)}: "
                    "give it once"
                )
        remotes = file.remotes
    else:
        remotes = (_flag_remote(options),)
    # A file's `local: {context: X}` finds its kubeconfig as --kube-context X does.
    local_context = file.local.context if file and file.local else options["kube_context"]
    local = (file.local if file and file.local and file.local.path else None) or KubeconfigSource(
        credentials.resolve_kubeconfig(options["kube_config"]), local_context
    )
    credentials.check(local, "local")
    for i, remote in enumerate(remotes):
        where = f"--config {options['config']}: remotes[{i}]" if file else None
        credentials.check(remote.credentials, "remote", where=where)
    for option in ("resync_period", "pass_timeout", "request_timeout"):
        options[option] = _parse(option, options[option])
    if options["pass_timeout"] <= 0:
        raise UsageError("--pass-timeout (KSM_PASS_TIMEOUT) must be longer than 0s")
    if options["request_timeout"] <= 0:
        raise UsageError("--request-timeout (KSM_REQUEST_TIMEOUT) must be longer than 0s")
    mirror_ns = (file.mirror_namespace if file else None) or options["mirror_ns"]
    policy = (file.policy if file else None) or options["policy"].value
    ratio = file.max_delete_ratio if file else None
    api = (file.endpoints_api if file else None) or options["endpoints_api"].value
    global_services = file.global_services if file else None
    if global_services is not None and api == "endpoints":
        raise UsageError(
            "global services are merged from EndpointSlices: drop --endpoints-api endpoints"
        )
    return Settings(
        mirror_namespace=mirror_ns or credentials.default_namespace(local),
        local=local,
        remotes=remotes,
        global_services=global_services,
        svc_sync=options["svc_sync"],
        policy=policy,
        endpoints_api=api,
        max_delete_ratio=options["max_delete_ratio"] if ratio is None else ratio,
        retirement=file.retirement if file else None,
        cluster_set=file.cluster_set if file else None,
        dry_run=options["dry_run"],
        concurrency=options["concurrency"],
        pass_timeout=options["pass_timeout"],
        request_timeout=options["request_timeout"],
    )


def _flag_remote(options: dict[str, Any]) -> Remote:
    """The one remote of kube-service-mirror's options."""
    for option in ("label_selector", "svc_prefix"):
        if not options[option]:
            raise UsageError(f"Missing option '--{option.replace('_', '-')}' "
                             f"(KSM_{option.upper()}), or give --config")  # fmt: skip
    if problem := selector_problem(options["label_selector"]):
        raise UsageError(f"--label-selector (KSM_LABEL_SELECTOR) is invalid: {problem}")
    if problem := prefix_problem(options["svc_prefix"]):
        raise UsageError(f"--svc-prefix (KSM_SVC_PREFIX) is invalid: {problem}")
    remote: KubeconfigSource | TokenSource
    if options["target_kube_config"] and options["remote_api_url"]:
        raise UsageError(
            "give either --target-kube-config (KSM_TARGET_KUBE_CONFIG) or --remote-api-url "
            "(KSM_REMOTE_API_URL), not both"
        )
    if options["target_kube_config"]:
        remote = KubeconfigSource(options["target_kube_config"], options["target_kube_context"])
    elif options["remote_api_url"]:
        if not options["remote_ca_url"]:
            raise UsageError("--remote-api-url needs --remote-ca-url (KSM_REMOTE_CA_URL)")
        remote = TokenSource(
            api_url=options["remote_api_url"],
            ca_url=options["remote_ca_url"],
            token_path=options["remote_sa_token_path"],
            token_value=os.environ.get(TOKEN_VARIABLE),
            insecure_ca_over_http=options["insecure_ca_over_http"],
        )
    else:
        raise UsageError(
            "no remote cluster: give --target-kube-config (KSM_TARGET_KUBE_CONFIG), or "
            "--remote-api-url with --remote-ca-url and a token"
        )
    return Remote(REMOTE_NAME, options["svc_prefix"], options["label_selector"], remote)


def _parse(option: str, value: str) -> float:
    name = "--" + option.replace("_", "-")
    try:
        return parse_duration(value)
    except ValueError as error:
        raise UsageError(f"{name} (KSM_{option.upper()}) is invalid: {error}") from None


def _run(mode: str, options: dict[str, Any], ctx: typer.Context) -> None:
    logs.configure(options["log_level"].value, options["log_format"].value)
    stop = _stop_on_signals()  # from the start: a signal during start-up stops cleanly too

    def given(option: str) -> bool:
        source = ctx.get_parameter_source(option)
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    try:
        settings = build_settings(dict(options), given)
    except (UsageError, Unavailable) as error:
        logger.error(str(error))
        raise typer.Exit(error.exit_code) from None
    period = parse_duration(options["resync_period"])
    if mode == "loop" and period <= 0:
        logger.error("--resync-period (KSM_RESYNC_PERIOD) must be longer than 0s for loop")
        raise typer.Exit(UsageError.exit_code)
    logger.debug("settings: {} resync_period={}", settings, period)  # secrets have repr=False
    prefixes = ",".join(settings.prefixes)
    logger.bind(mode=mode, prefix=prefixes, mirror_namespace=settings.mirror_namespace).info(
        "ksm-sync {} {}: {}{}{}",
        __version__,
        mode,
        _describe(settings),
        f", mirror namespace {settings.mirror_namespace!r}" if settings.prefixes else "",
        f", every {format_duration(period)}" if mode == "loop" else "",
    )
    if mode == "loop" and period > SLOW_PERIOD:
        logger.bind(resync_period=period).warning(
            "--resync-period {} is the time between passes: a remote change can take that long "
            "to show. kube-service-mirror's -resync-period (default 1h) was only its watch "
            "cache's resync, its changes arrived at once; a Deployment carried over with it "
            "wants a period of a minute or so (see docs/migration.md)",
            format_duration(period),
        )
    from ksm_sync.sync import CLUSTER_SET, GLOBAL, Observers, run_pass

    # `once` keeps metrics only to write or push them; `loop` serves them.
    metrics = None
    if mode == "loop" or options["metrics_file"] or options["pushgateway_url"]:
        from ksm_sync.metrics import Metrics, export

        names = (
            tuple(r.name for r in settings.remotes)
            + ((GLOBAL,) if settings.global_services else ())
            + ((CLUSTER_SET,) if settings.cluster_set else ())
        )
        metrics = Metrics(
            version=__version__,
            prefix=prefixes,
            mirror_namespace=settings.mirror_namespace,
            remotes=names,
            resync_period=period if mode == "loop" else None,
        )
    server = (
        _server(options["listen_address"], metrics, period, settings) if mode == "loop" else None
    )
    observers = Observers(request=metrics.request, retry=metrics.retry) if metrics else Observers()
    # Every pass writes its credentials (the remote CA, the kubeconfigs' keys) in here, and
    # the directory goes with whatever ends the run, SIGTERM included.
    with tempfile.TemporaryDirectory(prefix="ksm-sync-") as workdir:

        def one_pass(state: PassState | None) -> Report:
            report = run_pass(
                settings, workdir=Path(workdir), state=state, cancel=stop, observers=observers
            )
            if metrics is not None:
                metrics.record(report)
                export(
                    metrics,
                    metrics_file=options["metrics_file"],
                    pushgateway_url=options["pushgateway_url"],
                )
            if server is not None:
                server.health.record(report)
            return report

        if mode == "once":
            code = one_pass(None).exit_code
        else:
            _loop(one_pass, period, server, stop)
            code = 0
    raise typer.Exit(code)


def _server(
    address: str, metrics: Metrics | None, period: float, settings: Settings
) -> Server | None:
    """`loop`'s /metrics, /healthz and /readyz; None with no address, or none to be had."""
    if not address or metrics is None:
        return None
    from ksm_sync.server import STALE_PERIODS, Health, Server

    health = Health(max_age=STALE_PERIODS * period + settings.pass_timeout)
    try:
        return Server(address, metrics, health)
    except UsageError as error:
        logger.error(str(error))
        raise typer.Exit(error.exit_code) from None
    except Unavailable as error:  # mirroring matters more than its metrics: carry on
        logger.warning("{}; mirroring without them", error)
        return None


def _describe(settings: Settings) -> str:
    """What is mirrored, for the start-up line."""
    if (
        settings.remotes == settings.mirrored
        and len(settings.remotes) == 1
        and not (settings.global_services or settings.cluster_set)
    ):
        [remote] = settings.remotes
        return f"selector {remote.label_selector!r}, prefix {remote.prefix!r}"
    parts = [f"{r.name} (prefix {r.prefix!r}, selector {r.label_selector!r})" if r.mirrored
             else f"{r.name} (a member of the cluster set)" for r in settings.remotes]  # fmt: skip
    if (wanted := settings.global_services) is not None:
        parts.append(f"global services (prefix {wanted.prefix!r}, selector "
                     f"{wanted.label_selector!r})")  # fmt: skip
    if (cluster_set := settings.cluster_set) is not None:
        parts.append(f"the cluster set, as member {cluster_set.cluster_id!r}")
    return "remotes " + ", ".join(parts)


def _stop_on_signals() -> threading.Event:
    """SIGTERM or SIGINT: stop once the writes in flight end; a second one: stop now.

    Either way the run unwinds, so its working directory (with credentials) is removed.

    The handler runs in the main thread wherever it was, perhaps inside a log call that holds
    loguru's lock, where logging again raises instead (a SIGTERM that came as "pass done" was
    written was lost so, and the loop ran on), or inside the stop event's own lock. So it only
    hands the signal to a thread, through a queue made to be re-entered, and that thread stops
    the run and says why.
    """
    stop = threading.Event()
    received: queue.SimpleQueue[str] = queue.SimpleQueue()

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            with contextlib.suppress(RuntimeError):  # mid-line: this line is the one lost
                logger.warning("{} received again: stopping now", name)
            raise SystemExit(128 + signum)
        received.put(name)

    def relay() -> None:
        name = received.get()
        stop.set()
        logger.info("{} received: stopping once the writes in flight end", name)

    threading.Thread(target=relay, name="signals", daemon=True).start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _loop(
    one_pass: Callable[[PassState], Report],
    period: float,
    server: Server | None,
    stop: threading.Event,
) -> None:
    """Passes until stopped, one every period from the start of the last; the server, if
    any, answers from before the first pass.

    Passes start on a fixed beat, so a change waits at most one period plus one pass. A
    pass longer than the period is followed at once by the next: passes never pile up, and
    the beat does not drift by the passes' own length.
    """
    from ksm_sync.sync import PassState

    state = PassState()
    if server is not None:
        server.start()
    try:
        while not stop.is_set():
            started = time.monotonic()
            one_pass(state)
            took = time.monotonic() - started
            if took > period:
                logger.bind(pass_seconds=round(took, 3), resync_period=period).warning(
                    "the pass took {:.1f}s, longer than --resync-period {}: the next starts "
                    "now (see 'Choosing the resync period' in docs/performance.md)",
                    took,
                    format_duration(period),
                )
            stop.wait(max(period - took, 0.0))
    finally:
        if server is not None:
            server.stop()
    logger.info("stopped")


def _command(mode: str, doc: str) -> Any:
    """A command taking every option of the template, and the context (to tell what the
    user set from what defaulted)."""

    @functools.wraps(_options)
    def command(ctx: typer.Context, **options: Any) -> None:
        _run(mode, options, ctx)

    template = inspect.signature(_options, eval_str=True)
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)  # fmt: skip
    command.__signature__ = template.replace(  # type: ignore[attr-defined]
        parameters=[context, *template.parameters.values()]
    )
    command.__doc__ = doc
    return command


app.command("once", help="Run one pass and exit (the CronJob).")(
    _command("once", "Run one pass and exit.")
)
app.command("loop", help="Run a pass every --resync-period until SIGTERM.")(
    _command("loop", "Run a pass every --resync-period.")
)


@app.command("corefile")
def _corefile(
    svc_prefix: Annotated[str | None, typer.Option(
        envvar="KSM_SVC_PREFIX", show_default=False,
        help="(required, unless --config) Prefix of mirror names.")] = None,
    mirror_ns: Annotated[str | None, typer.Option(
        envvar="KSM_MIRROR_NS", show_default=False,
        help="(required, unless --config says) Namespace of the mirrors.")] = None,
    remote_domain: Annotated[str | None, typer.Option(
        envvar="KSM_REMOTE_DOMAIN", show_default=False,
        help="Domain under which users reach the remote. Default: cluster.<svc-prefix>.")] = None,
    cluster_domain: Annotated[str, typer.Option(
        envvar="KSM_CLUSTER_DOMAIN", help="Domain of the local cluster.")] = "cluster.local",
    config_file: Annotated[str | None, typer.Option(
        "--config", envvar="KSM_CONFIG", show_default=False,
        help="The blocks of every remote and of the global services of this config file, "
        "each under cluster.<its prefix>; with clusterSet, the block of clusterset.local.")
    ] = None,
    kubeconfig: Annotated[str | None, typer.Option(
        envvar="KSM_COREDNS_KUBECONFIG", show_default=False,
        help="For a CoreDNS outside the cluster: the kubeconfig its kubernetes plugin reads the "
        "cluster with. Default: in-cluster, as the cluster's own CoreDNS.")] = None,
    bind: Annotated[str | None, typer.Option(
        envvar="KSM_COREDNS_BIND", show_default=False,
        help="For a CoreDNS outside the cluster: the address each block binds.")] = None,
) -> None:  # fmt: skip
    """Print the CoreDNS server block that answers the remote's names from the mirrors."""
    from ksm_sync.corefile import clusterset_block, server_block

    outside = {"bind": bind, "kubeconfig": kubeconfig}
    try:
        if config_file:
            from ksm_sync import config

            if svc_prefix or remote_domain:
                raise UsageError("--config gives the prefixes: drop --svc-prefix, --remote-domain")
            file = config.load(config_file)
            prefixes = [r.prefix for r in file.remotes if r.prefix]
            if file.global_services:
                prefixes.append(file.global_services.prefix)
            namespace = file.mirror_namespace or mirror_ns
            if prefixes and not namespace:
                raise UsageError(f"--config {config_file} has no mirrorNamespace: give --mirror-ns")
            blocks = [
                server_block(p, namespace or "", None, cluster_domain, **outside) for p in prefixes
            ]
            if file.cluster_set is not None:
                blocks.append(clusterset_block(file.cluster_set.cluster_id, **outside))
            block = "\n".join(blocks)
        else:
            if not svc_prefix or not mirror_ns:
                raise UsageError("give --svc-prefix and --mirror-ns, or --config")
            block = server_block(svc_prefix, mirror_ns, remote_domain, cluster_domain, **outside)
    except (ValueError, UsageError) as error:
        typer.echo(f"ksm-sync corefile: {error}", err=True)
        raise typer.Exit(UsageError.exit_code) from None
    typer.echo(block, nl=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ksm-sync {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:  # fmt: skip
    """Mirror Services and Endpoints of a remote cluster into one local namespace."""


def main() -> None:
    app(args=go_style(sys.argv[1:], _options), prog_name="ksm-sync")
