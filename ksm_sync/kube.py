"""Raw JSON requests to one API server, retried with tenacity.

Lists are read as raw JSON rather than through the client's model classes: building
models for thousands of objects costs more than the request itself (see issue 7).
The official client still does all the connecting: kubeconfig, auth, TLS, pooling.
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client import ApiClient
from loguru import logger

from ksm_sync.model import Json

if TYPE_CHECKING:
    from tenacity import RetryCallState

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
# Observers see every request: (side, cluster, verb, status code or 0, seconds).
RequestObserver = Callable[[str, str, str, int, float], None]
# Retry observers see every retry of a request: (side, cluster).
RetryObserver = Callable[[str, str], None]


class ApiError(Exception):
    """A request that failed; status 0 means no HTTP answer (refused, reset, timeout)."""

    def __init__(
        self,
        side: str,
        method: str,
        path: str,
        status: int,
        reason: str,
        *,
        retry_after: float | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(f"{side} API server: {method} {path}: {status or ''} {reason}".strip())
        self.side, self.method, self.path = side, method, path
        self.status, self.reason = status, reason
        self.retry_after = retry_after
        self.transient = (
            status == 0 or status in TRANSIENT_STATUSES if transient is None else transient
        )


class NotSent(ApiError):
    """A request not sent: the pass reached its --pass-timeout, or ksm-sync is stopping."""

    def __init__(self, side: str, method: str, path: str, why: str) -> None:
        super().__init__(side, method, path, 0, f"not sent: {why}", transient=False)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial: float = 0.2  # first backoff, doubled each attempt, with full jitter
    maximum: float = 10.0
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        try:
            return min(
                max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), MAX_RETRY_AFTER
            )
        except (TypeError, ValueError):
            return None


def _message(data: bytes, fallback: str) -> str:
    try:
        status = json.loads(data)
        return str(status.get("message") or status.get("reason") or fallback)
    except (ValueError, AttributeError):
        return fallback


def _dropped_handshake(error: urllib3.exceptions.SSLError) -> bool:
    """A connection closed mid-handshake (an API server restarting, a load balancer without
    backends) is worth another try; a certificate that does not verify is not."""
    cause = error.args[0] if error.args else None
    return isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)) or (
        "EOF occurred in violation of protocol" in str(error)
    )


def _verb(method: str, path: str, query: Mapping[str, str] | None) -> str:
    if method != "GET":
        return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
    return "list" if query and "limit" in query else "get"


class Kube:
    """One side's API server for one pass.

    No request starts, and no retry waits, past the pass deadline or once `stop` is set:
    what is left then is the next pass's.
    """

    def __init__(
        self,
        client: ApiClient,
        side: str,
        *,
        cluster: str | None = None,
        deadline: float,
        retry: RetryPolicy = RetryPolicy(),
        observer: RequestObserver | None = None,
        on_retry: RetryObserver | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.client, self.deadline, self.retry = client, deadline, retry
        self.kind, self.cluster = side, cluster or side  # "local" or "remote"; which one
        # How errors name it: "local", "remote", or "remote east" when remotes have names.
        self.side = side if self.cluster == side else f"{side} {self.cluster}"
        self.observer, self.on_retry = observer, on_retry
        self.stop = stop or threading.Event()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Json | None = None,
        content_type: str = "application/json",
    ) -> Json:
        # The first attempt runs outside tenacity, whose per-call setup cost as much client
        # CPU as a write's own request handling (issue 7); a transient failure replays into
        # tenacity as its attempt 1, so waits, logs and limits are exactly as before.
        try:
            return self._once(method, path, query, body, content_type)
        except ApiError as error:
            if not error.transient:
                raise
            first: list[ApiError] = [error]

        # tenacity is imported only when a request needs retrying: most passes never do.
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        def attempt() -> Json:
            if first:
                raise first.pop()
            return self._once(method, path, query, body, content_type)

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, ApiError) and e.transient),
            wait=self._wait,
            stop=stop_after_attempt(self.retry.attempts) | self._past_deadline,
            sleep=self.stop.wait,  # a stop ends the wait, and the next attempt is not sent
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(attempt)

    def list_all(
        self,
        path: str,
        query: Mapping[str, str],
        *,
        page_size: int,
        convert: Callable[[Json], Any] = lambda item: item,
    ) -> Iterator[Any]:
        """Every item of a paginated list, or ApiError; a 410 on a page restarts the list.

        Items are yielded only once the whole list is read, so a caller never acts on
        part of one. convert turns each page's items into what the caller keeps as the
        page arrives, so only one page of raw JSON is alive at a time: 10,000 raw Services
        with their managedFields weigh several times their models (issue 7).
        """
        for _ in range(3):
            items: list[Any] = []
            token = ""
            try:
                while True:
                    page_query = {**query, "limit": str(page_size)}
                    if token:
                        page_query["continue"] = token
                    page = self.request("GET", path, query=page_query)
                    items.extend(map(convert, page.get("items") or ()))
                    token = (page.get("metadata") or {}).get("continue") or ""
                    if not token:
                        yield from items
                        return
            except ApiError as error:
                if error.status != 410 or not token:
                    raise
                logger.info(
                    "list {} expired mid-way on the {} side; starting it again", path, self.side
                )
        raise ApiError(self.side, "GET", path, 410, "list continue token kept expiring")

    def _once(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Json | None,
        content_type: str,
    ) -> Json:
        if self.stop.is_set():
            raise NotSent(self.side, method, path, "ksm-sync is stopping")
        if time.monotonic() >= self.deadline:
            raise NotSent(self.side, method, path, "the pass reached its --pass-timeout")
        # Straight to the official client's urllib3 pool (its TLS, proxy and pooling), past
        # its param_serialize and REST layer: bodies here are plain JSON already, and that
        # generic plumbing (a recursive walk of every body, per-call setup) cost the client
        # more CPU per write than it spent on the HTTP exchange itself (issue 7).
        headers = {**self.client.default_headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        self.client.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        url = self.client.configuration.host + path
        if query:
            url += "?" + urlencode(query)
        remaining = max(self.deadline - time.monotonic(), 0.5)
        timeout = urllib3.Timeout(
            connect=min(self.retry.connect_timeout, remaining),
            read=min(self.retry.read_timeout, remaining),
        )
        verb = _verb(method, path, query)
        started = time.monotonic()
        status = 0
        try:
            response = self.client.rest_client.pool_manager.urlopen(
                method,
                url,
                body=json.dumps(body).encode() if body is not None else None,
                headers=headers,
                timeout=timeout,
            )
            data = response.data
            status = response.status
        except urllib3.exceptions.SSLError as error:
            raise ApiError(
                self.side,
                method,
                path,
                0,
                f"{type(error).__name__}: {error}",
                transient=_dropped_handshake(error),
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(self.side, method, path, 0, f"{type(error).__name__}: {error}") from None
        finally:
            if self.observer:
                self.observer(self.kind, self.cluster, verb, status, time.monotonic() - started)
        if not 200 <= status < 300:
            raise ApiError(
                self.side,
                method,
                path,
                status,
                _message(data, response.reason or ""),
                retry_after=_retry_after(response.headers),
            )
        try:
            answer = json.loads(data)
        except ValueError:
            raise ApiError(
                self.side, method, path, 0, "response body is not complete JSON"
            ) from None
        if not isinstance(answer, dict):
            # Not an API server's answer (a proxy's page, a wrong URL): nothing to act on.
            reason = f"response body is JSON but not an object ({type(answer).__name__})"
            raise ApiError(self.side, method, path, 0, reason, transient=False)
        return answer

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        backoff = min(self.retry.maximum, self.retry.initial * 2 ** (state.attempt_number - 1))
        jittered = backoff * random.random()
        if isinstance(error, ApiError) and error.retry_after is not None:
            return error.retry_after + jittered * 0.1
        return jittered

    def _past_deadline(self, state: RetryCallState) -> bool:
        return self.stop.is_set() or (
            time.monotonic() + (state.upcoming_sleep or 0.0) >= self.deadline
        )

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.bind(side=self.side, attempt=state.attempt_number).warning(
            "retrying in {:.2f}s after: {}", state.upcoming_sleep, error
        )
        if self.on_retry:
            self.on_retry(self.kind, self.cluster)
