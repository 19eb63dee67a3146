"""Metrics: scraped from a running loop, written by `once --metrics-file`, pushed to a gateway.

The figures are checked against what the passes did, as the API server's audit log saw it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from ksm_sync import __version__
from tests.support.cluster import service
from tests.support.loop import LoopRun
from tests.support.observability import (
    Samples,
    free_port,
    get,
    kubeconfig_via,
    parse,
    passes,
    scrape,
    total,
    value,
)
from tests.support.world import World

LONG_NAME = "this-name-is-far-too-long-to-mirror"  # its mirror name passes 63 characters
SUBSETS = [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "http", "port": 8080}]}]


def _world_with_trouble(world: World) -> None:
    """Two mirrors to create, one remote too long to name, one name taken locally."""
    for name in ("web", "api"):
        world.service(name)
        world.endpoints(name, SUBSETS)
    world.service(LONG_NAME)
    world.service("taken")
    world.local.create(
        service(world.mirror_ns, world.mirror_name("taken"), labels={"owner": "a-person"})
    )


def _ksm_writes(world: World) -> Counter[tuple[str, str, int]]:
    """(verb, resource, status) of ksm-sync's writes in the mirror namespace, from the audit log."""
    return Counter(
        (e["verb"], e["objectRef"]["resource"], e["responseStatus"]["code"])
        for e in world.writes()
        if e.get("userAgent", "").startswith("ksm-sync/")
    )


def _requests(samples: Samples, verb: str, code: int) -> float:
    return total(samples, "ksm_sync_api_requests_total", side="local", verb=verb, code=str(code))


def test_loop_metrics_count_what_the_passes_did(world: World) -> None:
    _world_with_trouble(world)
    url = f"http://127.0.0.1:{free_port()}"
    loop = LoopRun([*world.args(), "--resync-period", "4s", "--listen-address", url[7:]])
    try:
        loop.wait_for(lambda: passes(url) >= 1, 60, "the first pass")
        first = scrape(url)
        first_writes = _ksm_writes(world)
        loop.wait_for(lambda: passes(url) >= 2, 60, "the second pass")
        second = scrape(url)
        second_writes = _ksm_writes(world)
        ready = get(url + "/readyz")
    finally:
        code = loop.stop()
    assert code == 0, loop.tail()

    # Pass 1 created two mirrors (Service + Endpoints each), met the taken name, skipped one.
    assert value(first, "ksm_sync_passes_total", result="partial") == 1
    assert value(first, "ksm_sync_passes_total", result="success") == 0
    assert value(first, "ksm_sync_passes_total", result="error") == 0
    assert value(first, "ksm_sync_pass_duration_seconds_count") == 1
    assert value(first, "ksm_sync_last_pass_exit_code") == 1
    changes = {
        k: value(first, "ksm_sync_changes_total", remote="remote", kind=k)
        for k in ("created", "updated", "recreated", "deleted", "conflict", "skipped", "failed")
    }
    assert changes == {
        "created": 2,
        "updated": 0,
        "recreated": 0,
        "deleted": 0,
        "conflict": 1,
        "skipped": 1,
        "failed": 0,
    }
    assert value(first, "ksm_sync_objects", side="remote", kind="services") == 4
    assert value(first, "ksm_sync_objects", side="remote", kind="endpoints") == 2
    assert value(first, "ksm_sync_objects", side="local", kind="services") == 0
    assert value(first, "ksm_sync_objects", side="local", kind="endpoints") == 0
    assert value(first, "ksm_sync_deletion_guard_tripped") == 0
    # The request counters agree with the audit log of the local API server.
    assert first_writes == Counter(
        {
            ("create", "services", 201): 2,
            ("create", "endpoints", 201): 2,
            ("create", "services", 409): 1,
        }
    )
    assert _requests(first, "create", 201) == 4
    assert _requests(first, "create", 409) == 1
    assert _requests(first, "get", 200) == 1  # whose is the taken name?
    assert total(first, "ksm_sync_api_requests_total", side="remote", verb="list") == 2
    # Services, Endpoints and EndpointSlices: the kind not mirrored is listed to be replaced.
    assert total(first, "ksm_sync_api_requests_total", side="local", verb="list") == 3
    assert total(first, "ksm_sync_api_request_duration_seconds_count", side="local") == 9
    assert total(first, "ksm_sync_retries_total") == 0
    # Conflicts and skips do not make a pass unsuccessful: retrying cannot fix them.
    last_success = value(first, "ksm_sync_last_success_timestamp_seconds")
    assert last_success is not None and abs(time.time() - last_success) < 30
    assert (
        value(
            first,
            "ksm_sync_info",
            version=__version__,
            prefix=world.prefix,
            mirror_namespace=world.mirror_ns,
        )
        == 1
    )

    # Pass 2 wrote nothing new: the conflict and the skip again, counters add up.
    assert value(second, "ksm_sync_passes_total", result="partial") == 2
    assert value(second, "ksm_sync_changes_total", remote="remote", kind="created") == 2
    assert value(second, "ksm_sync_changes_total", remote="remote", kind="conflict") == 2
    assert value(second, "ksm_sync_changes_total", remote="remote", kind="skipped") == 2
    assert value(second, "ksm_sync_last_pass_changes", remote="remote", kind="unchanged") == 2
    assert value(second, "ksm_sync_last_pass_changes", remote="remote", kind="created") == 0
    assert value(second, "ksm_sync_objects", side="local", kind="services") == 2
    assert value(second, "ksm_sync_objects", side="local", kind="endpoints") == 2
    assert second_writes - first_writes == Counter({("create", "services", 409): 1})
    assert _requests(second, "create", 201) == 4
    assert _requests(second, "create", 409) == 2
    assert value(second, "ksm_sync_pass_duration_seconds_count") == 2
    assert ready[0] == 200, ready


def test_once_writes_a_textfile_that_keeps_the_last_success(world: World, tmp_path: Path) -> None:
    world.service("web")
    world.endpoints("web", SUBSETS)
    path = tmp_path / "ksm-sync.prom"

    result = world.run("--metrics-file", str(path))

    assert result.returncode == 0, result.stderr
    samples = parse(path.read_text())
    assert value(samples, "ksm_sync_passes_total", result="success") == 1
    assert value(samples, "ksm_sync_changes_total", remote="remote", kind="created") == 1
    assert value(samples, "ksm_sync_objects", side="remote", kind="services") == 1
    assert value(samples, "ksm_sync_last_pass_exit_code") == 0
    assert total(samples, "ksm_sync_api_requests_total", side="local", code="201") == 2
    success = value(samples, "ksm_sync_last_success_timestamp_seconds")
    assert success is not None and abs(time.time() - success) < 60
    assert not [name for name, _ in samples if name.endswith("_created")]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left

    # A run that cannot reach the remote replaces the file but keeps the last success.
    unreachable = kubeconfig_via(world.remote, free_port(), tmp_path / "nowhere.kubeconfig")
    args = [
        "--target-kube-config",
        unreachable,
        "--kube-config",
        world.local.kubeconfig,
        "--mirror-ns",
        world.mirror_ns,
        "--label-selector",
        world.selector,
        "--svc-prefix",
        world.prefix,
        "--pass-timeout",
        "3s",
        "--metrics-file",
        str(path),
    ]
    failed = world.run(*args, defaults=False)

    assert failed.returncode == 3, failed.stderr
    samples = parse(path.read_text())
    assert value(samples, "ksm_sync_passes_total", result="error") == 1
    assert value(samples, "ksm_sync_passes_total", result="success") == 0
    assert value(samples, "ksm_sync_last_pass_exit_code") == 3
    assert value(samples, "ksm_sync_last_success_timestamp_seconds") == success
    assert total(samples, "ksm_sync_api_requests_total", side="remote", code="0") >= 1
    assert value(samples, "ksm_sync_retries_total", side="remote", cluster="remote") >= 1


class _Gateway(BaseHTTPRequestHandler):
    """A stand-in Pushgateway: records each push and accepts it."""

    pushes: ClassVar[list[tuple[str, str, str, str]]] = []

    def do_PUT(self) -> None:
        self._record()

    def do_POST(self) -> None:
        self._record()

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.pushes.append((self.command, self.path, self.headers["Content-Type"], body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_once_pushes_to_a_pushgateway(world: World) -> None:
    world.service("web")
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    _Gateway.pushes = []
    try:
        result = world.run("--pushgateway-url", f"http://127.0.0.1:{gateway.server_address[1]}")
    finally:
        gateway.shutdown()
        gateway.server_close()

    assert result.returncode == 0, result.stderr
    [(method, path, content_type, body)] = _Gateway.pushes
    # POST replaces only the families it carries: a failed run keeps the last success pushed.
    assert method == "POST"
    assert path == f"/metrics/job/ksm-sync/mirror_namespace/{world.mirror_ns}/prefix/{world.prefix}"
    assert content_type.startswith("text/plain")
    samples = parse(body)
    assert value(samples, "ksm_sync_passes_total", result="success") == 1
    assert value(samples, "ksm_sync_changes_total", remote="remote", kind="created") == 1
    assert value(samples, "ksm_sync_last_success_timestamp_seconds") is not None


def test_an_unreachable_pushgateway_does_not_change_the_exit_status(world: World) -> None:
    world.service("web")

    result = world.run("--pushgateway-url", f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 0, result.stderr
    assert "cannot push the metrics" in result.stderr
    assert world.mirror_name("web") in world.mirrors()
