"""API clients for the local and remote clusters, built fresh for every pass.

Fresh, because what they are built from rotates: projected service-account tokens, the
remote CA behind --remote-ca-url, kubeconfig files rewritten by other tools.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException, list_kube_config_contexts, load_kube_config
from kubernetes.config.incluster_config import load_incluster_config
from loguru import logger

from ksm_sync import __version__, logs
from ksm_sync.errors import Unavailable, UsageError
from ksm_sync.settings import KubeconfigSource, TokenSource

BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token, matched whole
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
CA_FETCH_TIMEOUT = 10.0


def resolve_kubeconfig(flag: str | None) -> str | None:
    """kubectl's order: the flag, then KUBECONFIG, then in-cluster, then ~/.kube/config."""
    if flag:
        return flag
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    default = Path.home() / ".kube" / "config"
    if default.exists():
        return str(default)
    raise UsageError(
        "no local credentials: give --kube-config (KSM_KUBE_CONFIG) or KUBECONFIG, "
        "or run in a pod with a service account"
    )


def default_namespace(source: KubeconfigSource) -> str:
    """The namespace of the local credentials, as kubectl would pick it."""
    if source.path is None:
        try:
            return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"
    context = _context(source, "--kube-config", "--kube-context")
    return (context.get("context") or {}).get("namespace") or "default"


def _context(source: KubeconfigSource, file_option: str, context_option: str) -> dict:
    _check_files(source.path or "", file_option)
    try:
        contexts, active = list_kube_config_contexts(source.path)
    except Exception as error:  # the client raises YAML, base64, type errors as they come
        raise UsageError(f"{file_option} {source.path}: {_unreadable(error)}") from None
    wanted = source.context or (active or {}).get("name")
    for context in contexts or ():
        if context.get("name") == wanted:
            return context
    names = ", ".join(c.get("name", "?") for c in contexts or ()) or "none"
    raise UsageError(
        f"{context_option} {wanted!r} is not a context of {source.path} (contexts: {names})"
    )


def _check_files(paths: str, option: str) -> None:
    for path in filter(None, paths.split(os.pathsep)):
        if not Path(path).is_file():
            raise UsageError(f"{option} {path}: no such file")


def _unreadable(error: Exception) -> str:
    if isinstance(error, ConfigException):
        return str(error)
    return f"cannot be read ({type(error).__name__}: {error})"


def check(source: KubeconfigSource | TokenSource, side: str, where: str | None = None) -> None:
    """Fails now, with exit status 2, on what would make every pass fail the same way.

    where names a remote of a config file (`--config F: remotes[0]`) in messages.
    """
    if isinstance(source, TokenSource):
        read_token(source)
        check_remote_urls(source)
    elif source.path is not None:
        option = "--kube-config" if side == "local" else "--target-kube-config"
        context_option = "--kube-context" if side == "local" else "--target-kube-context"
        if where:
            option, context_option = f"{where}.kubeconfig", f"{where}.context"
        _context(source, option, context_option)
        with tempfile.TemporaryDirectory(prefix="ksm-sync-check-") as scratch:
            _load_kubeconfig(source, Configuration(), Path(scratch))  # base64, keys: no network


def check_remote_urls(source: TokenSource) -> None:
    """The bearer token goes to the API URL every pass: never in clear beyond this host.

    A CA fetched over plain HTTP can be swapped by anyone on the path, who can then
    terminate TLS and collect the token: that takes an opt-in whose name says so.
    """
    api = urlparse(source.api_url)
    if api.scheme != "https" and not (api.scheme == "http" and _loopback(api.hostname)):
        raise UsageError(
            f"--remote-api-url (KSM_REMOTE_API_URL) {source.api_url} must be https:// (plain "
            "http only to a loopback address, such as kubectl proxy): the bearer token would "
            "travel in clear"
        )
    if urlparse(source.ca_url).scheme == "http" and not source.insecure_ca_over_http:
        raise UsageError(
            f"--remote-ca-url (KSM_REMOTE_CA_URL) {source.ca_url} is plain http: whoever can "
            "change that answer can swap the CA and read the bearer token. Serve the CA over "
            "https:// or from a file, or accept the risk with --insecure-ca-over-http "
            "(KSM_INSECURE_CA_OVER_HTTP)"
        )


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _load_kubeconfig(source: KubeconfigSource, configuration: Configuration, workdir: Path) -> None:
    """Loads a kubeconfig into configuration; its key and certificate files go in workdir.

    The official client writes certificate and key data to temporary files and removes
    them only at a normal exit; in workdir they go with it, whatever ends the run.
    """
    try:
        load_kube_config(
            config_file=source.path,
            context=source.context,
            client_configuration=configuration,
            persist_config=False,
            temp_file_path=str(workdir),
        )
    except Exception as error:  # YAML caught mid-rewrite, bad base64, a missing key file
        raise UsageError(f"kubeconfig {source.path}: {_unreadable(error)}") from None


def client(
    source: KubeconfigSource | TokenSource, *, side: str, pool_size: int, workdir: Path
) -> ApiClient:
    configuration = Configuration()
    if isinstance(source, TokenSource):
        configuration.host = source.api_url
        configuration.api_key = {"authorization": read_token(source)}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        configuration.ssl_ca_cert = str(_write_ca(fetch_ca(source.ca_url), workdir))
    elif source.path is None:
        try:
            load_incluster_config(client_configuration=configuration)
        except ConfigException as error:
            raise Unavailable(f"in-cluster credentials: {error}") from None
    else:
        _load_kubeconfig(source, configuration, workdir)
        if not configuration.verify_ssl:
            logger.warning(
                "the {} kubeconfig {} sets insecure-skip-tls-verify: the {} API server is not "
                "authenticated, and its credentials go to whoever answers",
                side,
                source.path,
                side,
            )
    for key in (configuration.api_key or {}).values():  # kubeconfig tokens: never logged either
        logs.secret(str(key).removeprefix("Bearer ").strip())
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = False  # tenacity retries; urllib3 must not retry underneath
    api = ApiClient(configuration)
    api.user_agent = f"ksm-sync/{__version__}"
    return api


def read_token(source: TokenSource) -> str:
    """The bearer token, read now: from the file when one is named, else from the variable."""
    if source.token_path:
        try:
            token = Path(source.token_path).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(
                f"--remote-sa-token-path {source.token_path}: cannot read the token file "
                f"({error.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise UsageError(
                f"--remote-sa-token-path {source.token_path}: the token file is not text "
                "(not UTF-8)"
            ) from None
        origin = f"the token in {source.token_path} (--remote-sa-token-path)"
    elif source.token_value is not None:
        token, origin = source.token_value, "KSM_REMOTE_SERVICE_ACCOUNT_TOKEN"
    else:
        raise UsageError(
            "--remote-api-url needs a token: --remote-sa-token-path FILE or "
            "KSM_REMOTE_SERVICE_ACCOUNT_TOKEN"
        )
    token = token.rstrip("\r\n")
    logs.secret(token)  # before anything can log it, even in an error message
    if not BEARER_TOKEN.fullmatch(token):
        raise UsageError(
            f"{origin} is not a valid token: RFC 6750 allows letters, digits and -._~+/, "
            f"then optional '=' padding ({len(token)} characters read, not shown)"
        )
    return token


def fetch_ca(url: str) -> bytes:
    """The remote CA bundle from an https://, http:// or file:// URL, or a path."""
    scheme = urlparse(url).scheme
    try:
        if scheme in ("http", "https"):
            if scheme == "http":  # refused at start-up unless --insecure-ca-over-http
                logger.warning(
                    "--remote-ca-url {} is plain HTTP: the CA travels unauthenticated "
                    "(accepted with --insecure-ca-over-http)",
                    url,
                )
            with urllib.request.urlopen(url, timeout=CA_FETCH_TIMEOUT) as response:
                data = response.read()
        else:
            path = urlparse(url).path if scheme == "file" else url
            data = Path(path).read_bytes()
    except (OSError, urllib.error.URLError, ValueError) as error:
        raise Unavailable(f"--remote-ca-url {url}: cannot fetch the CA ({error})") from None
    try:
        ssl.create_default_context(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise Unavailable(
            f"--remote-ca-url {url}: the answer is not a PEM certificate bundle"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise Unavailable(f"--remote-ca-url {url}: the answer is not a PEM certificate bundle")
    return data


def _write_ca(data: bytes, workdir: Path) -> Path:
    """One file per run, replaced whole, so a client of the last pass never reads half a CA."""
    fd, name = tempfile.mkstemp(prefix=".remote-ca-", dir=workdir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path = workdir / "remote-ca.crt"
    os.replace(name, path)
    return path
