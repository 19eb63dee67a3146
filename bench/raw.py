"""The minimal client: plain HTTP + JSON over keep-alive connections, one per thread.

Used to seed the remote cluster fast and to measure the floor: the least a client can do
to issue the requests ksm-sync issues (send, read, parse), with nothing of its own on top.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode, urlparse

Json = dict[str, Any]


class RawError(Exception):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path}: {status} {body[:300]!r}")
        self.status = status


class Raw:
    """One API server, admin credentials; safe to share between threads."""

    def __init__(self, url: str, context: ssl.SSLContext, user_agent: str) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self.context, self.user_agent = context, user_agent
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=120
            )
            self._local.conn = conn
        return conn

    def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Json:
        if query:
            path = f"{path}?{urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(2):  # a keep-alive connection the server closed: reconnect once
            conn = self._connection()
            try:
                conn.request(method, path, data, headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, ConnectionError, ssl.SSLError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        if not 200 <= response.status < 300:
            raise RawError(method, path, response.status, payload)
        return json.loads(payload)

    def list_all(self, path: str, selector: str, page_size: int) -> list[Json]:
        """A paginated list, parsed page by page, as ksm-sync reads it (selector "": all)."""
        items: list[Json] = []
        token = ""
        while True:
            query = {"labelSelector": selector} if selector else {}
            query["limit"] = str(page_size)
            if token:
                query["continue"] = token
            page = self.request("GET", path, query=query)
            items.extend(page.get("items") or ())
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items


def run_all(
    work: Callable[[Any], object], jobs: Iterable[Any], concurrency: int
) -> Iterator[object]:
    """work(job) for every job on `concurrency` threads; raises the first failure."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        yield from pool.map(work, jobs)
