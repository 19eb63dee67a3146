"""A fault-injecting HTTPS proxy in front of a real control plane: the real server, a bad network.

ksm-sync talks to the proxy with a kubeconfig of its own (the proxy's test CA, a bearer
token the proxy checks); the proxy forwards to the API server as its admin. Per request,
from a seeded random.Random, it may answer 429 with Retry-After, 500/503/504, reset the
connection, stall past the client's timeout, truncate the body, or expire a list's continue
token (410). It counts what it did and logs every request, so tests can count by verb.
Standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.client
import http.server
import json
import random
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from tests.support.controlplane import ControlPlane
from tests.support.world import World

FAULTS = ("429", "500", "503", "504", "reset", "stall", "truncate", "expire")
# Faults only a plan asks for: 200 with a JSON body that is not an object (a misrouted URL);
# an answer slow_seconds late (a loaded API server), otherwise untouched.
PLANNED_FAULTS = ("not-object", "slow")
STATUS_FAULTS = {"429": "TooManyRequests", "500": "InternalError", "503": "ServiceUnavailable",
                 "504": "Timeout"}  # fmt: skip
# Headers the proxy sets itself; Authorization is the proxy's token, never forwarded.
HOP_BY_HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "authorization",
        "content-length",
    ]
)


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it, and what it did with it."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    query: dict[str, str]
    fault: str | None  # None: forwarded untouched
    status: int  # what the client was sent; 0 for reset, stall, or an unreadable upstream

    @property
    def verb(self) -> str:
        """The Kubernetes verb, as ksm-sync's own request metrics name it."""
        if self.method == "GET":
            return "list" if "limit" in self.query or _is_collection(self.path) else "get"
        return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(
            self.method, self.method.lower()
        )

    @property
    def resource(self) -> str:
        """services or endpoints (the collection the path names)."""
        parts = self.path.strip("/").split("/")
        for kind in ("services", "endpoints"):
            if kind in parts:
                return kind
        return parts[-1] if parts else ""


def _is_collection(path: str) -> bool:
    return path.rstrip("/").split("/")[-1] in ("services", "endpoints")


# A plan decides one request's fault by hand (overriding rate and faults); None forwards it.
Plan = Callable[[Request], str | None]


@dataclass(frozen=True)
class ProxyCA:
    """The proxy's own test CA and its serving certificate for 127.0.0.1."""

    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.dir / "proxy.crt", self.dir / "proxy.key")
        return ctx


@functools.cache
def test_ca() -> ProxyCA:
    """One CA per test process, made with the openssl CLI as the control planes' are."""
    d = Path(tempfile.mkdtemp(prefix="faultproxy-ca-"))
    atexit.register(shutil.rmtree, d, True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
            "-subj", "/CN=ksm-sync-faultproxy-ca")  # fmt: skip
    (d / "proxy.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    openssl("req", *ec, "-keyout", "proxy.key", "-out", "proxy.csr", "-subj", "/CN=faultproxy")
    openssl("x509", "-req", "-in", "proxy.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "30", "-extfile", "proxy.ext",
            "-out", "proxy.crt")  # fmt: skip
    return ProxyCA(d)


@dataclass
class FaultProxy:
    """Forwards to upstream, faulting a `rate` share of requests with one of `faults`.

    `match` limits faults to the requests it accepts; `plan`, when set, decides every
    request's fault itself. `page_limit` lowers the `limit` of list requests so that small
    lists come in pages (and continue tokens exist to expire). All of these may be changed
    while the proxy runs.
    """

    upstream: ControlPlane
    seed: int = 0
    rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    match: Callable[[Request], bool] | None = None
    plan: Plan | None = None
    retry_after: str = "1"
    stall_seconds: float = 5.0
    slow_seconds: float = 0.5
    page_limit: int | None = None
    drop_handshakes: int = 0  # the next N connections are closed before TLS completes
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    counts: Counter[str] = field(default_factory=Counter)
    log: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        assert not unknown, f"unknown faults {unknown}"
        self.ca = test_ca()
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._upstream_ctx = self.upstream.admin_ssl_context()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path) -> str:
        """A kubeconfig that reaches the upstream only through this proxy."""
        name = f"faultproxy-{self.upstream.name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {
                "server": self.url, "certificate-authority": str(self.ca.ca_file)}}],
            "users": [{"name": name, "user": {"token": self.token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }  # fmt: skip
        path.write_text(json.dumps(config, indent=2))
        return str(path)

    def requests(self, verb: str | None = None, resource: str | None = None) -> list[Request]:
        with self._lock:
            log = list(self.log)
        return [
            r
            for r in log
            if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
        ]

    def _choose(self, request: Request) -> str | None:
        if self.plan is not None:
            return self.plan(request)
        if self.match is not None and not self.match(request):
            return None
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            applicable = [f for f in self.faults if f != "expire" or "continue" in request.query]
            return self._random.choice(applicable) if applicable else None

    def _drop_handshake(self) -> bool:
        with self._lock:
            if self.drop_handshakes <= 0:
                return False
            self.drop_handshakes -= 1
            self.counts["eof-handshake"] += 1
            return True

    def _coin(self) -> bool:
        with self._lock:
            return self._random.random() < 0.5

    def _record(self, request: Request, fault: str | None, status: int) -> None:
        done = Request(request.at, request.method, request.path, request.query, fault, status)
        with self._lock:
            self.log.append(done)
            self.counts[fault or "forwarded"] += 1


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.tls = proxy.ca.server_context()
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake in the connection's own thread, not in the accept loop."""
        if self.proxy._drop_handshake():
            _close(request)  # a clean close: the client reads EOF in the middle of its handshake
            return
        try:
            request.settimeout(30)
            tls = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            _close(tls)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that vanish mid-request are the point of this proxy, not an error."""


class _Reset(Exception):
    """The connection was reset on purpose; nothing more is written on it."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _upstream = threading.local()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the proxy's record."""

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Reset:
            self.close_connection = True
        except OSError:
            self.close_connection = True

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def _proxy(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        request = Request(time.monotonic(), self.command, split.path, query, None, 0)
        if self.headers.get("Authorization") != f"Bearer {proxy.token}":
            self._status(401, "Unauthorized", "the fault proxy wants its own bearer token")
            proxy._record(request, "unauthorized", 401)
            return
        fault = proxy._choose(request)
        if fault in STATUS_FAULTS:
            headers = {"Retry-After": proxy.retry_after} if fault == "429" else {}
            self._status(int(fault), STATUS_FAULTS[fault], f"fault proxy: {fault}", headers)
            proxy._record(request, fault, int(fault))
            return
        if fault == "expire":
            self._status(410, "Expired", "fault proxy: the provided continue parameter is too old")
            proxy._record(request, fault, 410)
            return
        if fault == "slow":
            proxy._stopping.wait(proxy.slow_seconds)
        if fault == "not-object":
            self._send(200, "OK", [("Content-Type", "application/json")], b"[]")
            proxy._record(request, fault, 200)
            return
        if fault == "stall":
            proxy._record(request, fault, 0)
            proxy._stopping.wait(proxy.stall_seconds)
            raise _Reset
        if fault == "reset" and proxy._coin():
            proxy._record(request, fault, 0)
            self._reset()  # before the upstream saw it
        upstream_query = split.query
        if proxy.page_limit is not None and "limit" in query:
            query_pairs = {**query, "limit": str(min(int(query["limit"]), proxy.page_limit))}
            upstream_query = "&".join(f"{k}={v}" for k, v in _quoted(query_pairs.items()))
        try:
            status, reason, headers, data = self._forward(
                split.path + (f"?{upstream_query}" if upstream_query else ""), body
            )
        except (OSError, http.client.HTTPException) as error:
            self._status(502, "BadGateway", f"fault proxy: upstream: {error}")
            proxy._record(request, fault, 502)
            return
        if fault == "reset":
            proxy._record(request, fault, 0)
            self._reset()  # after the upstream acted: the client never learns the outcome
        if fault == "truncate":
            proxy._record(request, fault, status)
            if proxy._coin():
                # Announce the whole body, send half, hang up: the HTTP layer notices.
                self._send(status, reason, headers, data[: len(data) // 2], length=len(data))
                raise _Reset
            # A well-formed response whose body is cut short: only the JSON is wrong.
            self._send(status, reason, headers, data[: len(data) // 2])
            return
        self._send(status, reason, headers, data)
        proxy._record(request, fault, status)

    def _forward(self, target: str, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body:
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):  # a pooled upstream connection may have gone stale
            conn = self._upstream_connection(fresh=attempt > 0)
            try:
                conn.request(self.command, target, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.reason, response.getheaders(), data
            except (OSError, http.client.HTTPException):
                conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _upstream_connection(self, *, fresh: bool) -> http.client.HTTPSConnection:
        proxy = self.server.proxy
        conns: dict[int, http.client.HTTPSConnection] = self._upstream.__dict__.setdefault(
            "conns", {}
        )
        conn = conns.get(id(proxy))
        if conn is None or fresh:
            split = urlsplit(proxy.upstream.url)
            conn = http.client.HTTPSConnection(
                split.hostname or "127.0.0.1", split.port, context=proxy._upstream_ctx, timeout=60
            )
            conns[id(proxy)] = conn
        return conn

    def _send(
        self,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]],
        data: bytes,
        *,
        length: int | None = None,
    ) -> None:
        self.send_response(status, reason)
        for key, value in headers:
            if key.lower() not in HOP_BY_HOP and key.lower() not in ("date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _status(
        self, code: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}  # fmt: skip
        extra = [("Content-Type", "application/json"), *(headers or {}).items()]
        self._send(code, reason, extra, json.dumps(status).encode())

    def _reset(self) -> None:
        """Closes with SO_LINGER 0: the peer sees a TCP reset, not a clean close."""
        _close(self.connection, reset=True)
        raise _Reset


def _quoted(pairs: Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    return ((quote(k, safe=""), quote(v, safe="")) for k, v in pairs)


def _close(sock: Any, *, reset: bool = False) -> None:
    with contextlib.suppress(OSError):
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def through(world: World, tmp_path: Path, *, remote: FaultProxy | None = None,
            local: FaultProxy | None = None) -> list[str]:  # fmt: skip
    """The world's CLI arguments, with either side's kubeconfig swapped for a proxy's."""
    args = world.args()
    if remote is not None:
        args[args.index("--target-kube-config") + 1] = remote.write_kubeconfig(
            tmp_path / "remote-proxy.kubeconfig"
        )
    if local is not None:
        args[args.index("--kube-config") + 1] = local.write_kubeconfig(
            tmp_path / "local-proxy.kubeconfig"
        )
    return args
