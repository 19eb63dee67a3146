"""loop's endpoints: /healthz while alive, /readyz following the passes and the remote."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.loop import LoopRun
from tests.support.observability import (
    Forwarder,
    free_port,
    get,
    kubeconfig_via,
    plane_address,
    scrape,
    total,
    value,
)
from tests.support.world import World


def _args(world: World, remote_kubeconfig: str) -> list[str]:
    args = world.args()
    args[args.index("--target-kube-config") + 1] = remote_kubeconfig
    return [*args, "--resync-period", "1s", "--pass-timeout", "4s"]


def test_readyz_follows_the_remote_going_away_and_coming_back(world: World, tmp_path: Path) -> None:
    world.service("web")
    forwarder = Forwarder(plane_address(world.remote))
    forwarder.start()
    kubeconfig = kubeconfig_via(world.remote, forwarder.port, tmp_path / "remote.kubeconfig")
    url = f"http://127.0.0.1:{free_port()}"
    loop = LoopRun([*_args(world, kubeconfig), "--listen-address", url[7:]])
    try:
        loop.wait_for(lambda: get(url + "/readyz")[0] == 200, 60, "ready")
        assert world.mirror_name("web") in world.mirrors()

        forwarder.stop()
        loop.wait_for(lambda: get(url + "/readyz")[0] == 503, 60, "unready")
        _, body = get(url + "/readyz")
        assert "the last pass did not succeed" in body and "reachable" in body, body
        assert get(url + "/healthz")[0] == 200  # alive all the same
        down = scrape(url)
        assert value(down, "ksm_sync_passes_total", result="error") >= 1
        assert value(down, "ksm_sync_last_pass_exit_code") == 3
        assert value(down, "ksm_sync_retries_total", side="remote", cluster="remote") >= 1
        assert total(down, "ksm_sync_api_requests_total", side="remote", code="0") >= 1

        forwarder.start()
        loop.wait_for(lambda: get(url + "/readyz")[0] == 200, 60, "ready again")
        up = scrape(url)
        assert value(up, "ksm_sync_last_pass_exit_code") == 0
        assert value(up, "ksm_sync_passes_total", result="success") >= 2
    finally:
        code = loop.stop()
        forwarder.stop()
    assert code == 0, loop.tail()
    assert get(url + "/healthz")[0] == 0  # the server stopped with the loop


def test_a_taken_listen_address_does_not_stop_mirroring(world: World) -> None:
    world.service("web")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        loop = LoopRun(
            [*world.args(), "--resync-period", "1h", "--listen-address", f"127.0.0.1:{port}"]
        )
        try:
            loop.wait_for(lambda: world.mirror_name("web") in world.mirrors(), 60, "the mirror")
        finally:
            code = loop.stop()
    assert code == 0, loop.tail()
    [warning] = [m for m in loop.messages("warning") if "--listen-address" in m]
    assert warning.startswith(f"--listen-address 127.0.0.1:{port}: cannot serve /metrics")
    assert loop.messages("error") == []


def test_a_bad_listen_address_is_bad_input(world: World) -> None:
    result = world.run("--listen-address", "localhost", command="loop")

    assert result.returncode == 2
    assert "--listen-address (KSM_LISTEN_ADDRESS) 'localhost' is not host:port" in result.stderr
