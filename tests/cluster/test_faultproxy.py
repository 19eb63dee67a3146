"""The fault proxy itself: it forwards faithfully, and each fault looks as it would on a wire."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import pytest

from tests.support.cluster import Cluster, service
from tests.support.faultproxy import FaultProxy, Request


def _client(proxy: FaultProxy, timeout: float = 10) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(proxy.ca.ca_file))
    return http.client.HTTPSConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]),
                                       context=context, timeout=timeout)  # fmt: skip


def _get(proxy: FaultProxy, path: str, *, token: str | None = None, timeout: float = 10) -> tuple:
    conn = _client(proxy, timeout)
    headers = {"Authorization": f"Bearer {token or proxy.token}", "Accept": "application/json"}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_forwards_as_admin_only_with_its_own_token_and_pages_on_request(remote: Cluster) -> None:
    ns = remote.create_namespace("fp")
    for i in range(5):
        remote.create(service(ns, f"s{i}"))
    with FaultProxy(remote.plane, page_limit=2) as proxy:
        status, _, body = _get(proxy, f"/api/v1/namespaces/{ns}/services?limit=500")
        assert status == 200
        page = json.loads(body)
        assert len(page["items"]) == 2 and page["metadata"]["continue"]
        status, _, _ = _get(proxy, f"/api/v1/namespaces/{ns}/services", token="wrong")
        assert status == 401
        assert [r.verb for r in proxy.requests()] == ["list", "list"]
        assert proxy.counts == {"forwarded": 1, "unauthorized": 1}


@pytest.mark.parametrize("fault", ["429", "500", "503", "504"])
def test_status_faults_answer_a_kubernetes_status(remote: Cluster, fault: str) -> None:
    with FaultProxy(remote.plane, rate=1.0, faults=(fault,), retry_after="7") as proxy:
        status, headers, body = _get(proxy, "/api/v1/namespaces/default/services?limit=1")
    assert status == int(fault)
    assert json.loads(body)["code"] == int(fault)
    assert (headers.get("Retry-After") == "7") == (fault == "429")
    assert proxy.counts == {fault: 1}


def test_expire_answers_410_only_to_requests_that_carry_a_continue_token(remote: Cluster) -> None:
    with FaultProxy(remote.plane, rate=1.0, faults=("expire",)) as proxy:
        assert _get(proxy, "/api/v1/services?limit=1")[0] == 200
        assert _get(proxy, "/api/v1/services?limit=1&continue=abc")[0] == 410
    assert proxy.counts == {"forwarded": 1, "expire": 1}


def test_reset_truncate_and_stall_break_the_exchange(remote: Cluster) -> None:
    path = "/api/v1/namespaces/default/services?limit=5"
    broken = (ConnectionError, http.client.HTTPException, ssl.SSLError)
    with FaultProxy(remote.plane, rate=1.0, faults=("reset",)) as proxy, pytest.raises(broken):
        _get(proxy, path)
    outcomes = set()
    with FaultProxy(remote.plane, rate=1.0, faults=("truncate",), seed=3) as proxy:
        for _ in range(6):  # both kinds: short body with honest length, or a hang-up
            try:
                _, _, body = _get(proxy, path)
                with pytest.raises(ValueError):
                    json.loads(body)
                outcomes.add("short")
            except http.client.IncompleteRead:
                outcomes.add("hang-up")
    assert outcomes == {"short", "hang-up"}
    with FaultProxy(remote.plane, rate=1.0, faults=("stall",), stall_seconds=3) as proxy:
        started = time.monotonic()
        with pytest.raises((TimeoutError, socket.timeout)):
            _get(proxy, path, timeout=0.5)
        assert time.monotonic() - started < 2.9  # the client gave up before the stall ended


def test_the_same_seed_makes_the_same_faults(remote: Cluster) -> None:
    decisions = []
    for _ in range(2):
        with FaultProxy(remote.plane, seed=42, rate=0.5) as proxy:
            for _ in range(20):
                decisions_of = proxy._choose(Request(0, "GET", "/api/v1/services", {}, None, 0))
                decisions.append(decisions_of)
    assert decisions[:20] == decisions[20:]
    assert any(decisions) and not all(decisions)
