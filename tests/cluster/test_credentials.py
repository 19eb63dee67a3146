"""Remote credentials the kube-service-mirror way: API URL + bearer token + CA fetched from a URL,
with a real ServiceAccount token that may only get and list Services and Endpoints."""

from __future__ import annotations

import functools
import http.server
import json
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_cli
from tests.support.cluster import Cluster
from tests.support.loop import LoopRun
from tests.support.world import World


def reader_token(remote: Cluster) -> tuple[str, str]:
    """A ServiceAccount allowed get/list on Services and Endpoints, cluster-wide; (ns, token)."""
    ns = remote.create_namespace("reader")
    role = f"ksm-reader-{secrets.token_hex(3)}"
    remote.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ksm", "namespace": ns}}
    )
    remote.request(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "endpoints"],
                    "verbs": ["get", "list"],
                }
            ],
        },
    )
    remote.request(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "ksm", "namespace": ns}],
        },
    )
    return ns, remote.service_account_token(ns, "ksm")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over plain HTTP on loopback, and its URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def token_args(world: World, token_file: Path, ca_url: str, prefix: str | None = None) -> list[str]:
    """Token-mode arguments; a CA served over plain http (the test's server) needs the opt-in."""
    opt_in = ["--insecure-ca-over-http"] if ca_url.startswith("http://") else []
    return [*opt_in,
        "--remote-api-url", world.remote.plane.url,
        "--remote-sa-token-path", str(token_file),
        "--remote-ca-url", ca_url,
        "--kube-config", world.local.kubeconfig,
        "--mirror-ns", world.mirror_ns,
        "--label-selector", world.selector,
        "--svc-prefix", prefix or world.prefix,
        "--endpoints-api", world.endpoints_api,
    ]  # fmt: skip


def shapes(world: World, prefix: str) -> dict[str, tuple]:
    selector = f"mirrored-svc=true,mirror-svc-prefix-sync={prefix}"
    out = {}
    for svc in world.local.list("Service", world.mirror_ns, selector):
        name = svc["metadata"]["name"].removeprefix(prefix)
        out[name] = (svc["spec"]["ports"][0]["port"], svc["spec"]["clusterIP"] == "None")
    for ep in world.local.list("Endpoints", world.mirror_ns, selector):
        out[ep["metadata"]["name"].removeprefix(prefix) + "/ep"] = ep["subsets"]
    return out


@pytest.mark.parametrize("ca_from", ["http", "file-url", "path"])
def test_token_and_ca_url_mirror_the_same_as_a_kubeconfig(
    world: World, served: tuple[Path, str], tmp_path: Path, ca_from: str
) -> None:
    world.service("web", ports=[{"port": 80}])
    world.service("db", ports=[{"port": 5432}], clusterIP="None")
    world.endpoints("web", [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"port": 80}]}])
    _, token = reader_token(world.remote)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    root, url = served
    shutil.copy(world.remote.plane.ca_file, root / "ca.crt")
    ca_url = {
        "http": f"{url}/ca.crt",
        "file-url": f"file://{root}/ca.crt",
        "path": str(root / "ca.crt"),
    }[ca_from]

    with_kubeconfig = world.run()
    with_token = world.run(
        *token_args(world, token_file, ca_url, "t" + world.prefix), defaults=False
    )

    assert with_kubeconfig.returncode == 0 and with_token.returncode == 0, with_token.stderr
    assert shapes(world, world.prefix) == shapes(world, "t" + world.prefix)
    assert len(shapes(world, world.prefix)) == 3
    assert ("is plain HTTP: the CA travels unauthenticated" in with_token.stderr) == (
        ca_from == "http"
    )
    assert token not in with_token.stderr + with_token.stdout


def test_token_from_the_variable_and_the_file_wins(world: World, tmp_path: Path) -> None:
    world.service("web")
    _, token = reader_token(world.remote)
    args = token_args(world, tmp_path / "token", str(world.remote.plane.ca_file))
    without_file = [a for a in args if a not in ("--remote-sa-token-path", str(tmp_path / "token"))]

    from_variable = world.run(
        *without_file, defaults=False, env={"KSM_REMOTE_SERVICE_ACCOUNT_TOKEN": token}
    )
    assert from_variable.returncode == 0, from_variable.stderr
    (tmp_path / "token").write_text("not a token!")
    file_wins = world.run(*args, defaults=False, env={"KSM_REMOTE_SERVICE_ACCOUNT_TOKEN": token})

    assert file_wins.returncode == 2
    assert (
        f"the token in {tmp_path / 'token'} (--remote-sa-token-path) is not a valid token"
        in file_wins.stderr
    )
    assert "not a token!" not in file_wins.stderr


def test_rotated_token_and_ca_are_picked_up_between_loop_passes(
    world: World, served: tuple[Path, str], tmp_path: Path
) -> None:
    sa_ns, old_token = reader_token(world.remote)
    token_file = tmp_path / "token"
    token_file.write_text(old_token)
    root, url = served
    shutil.copy(world.local.plane.ca_file, root / "ca.crt")  # the wrong CA: passes fail
    world.service("first")
    loop = LoopRun([*token_args(world, token_file, f"{url}/ca.crt"), "--resync-period", "300ms"])
    try:
        loop.wait_for(
            lambda: any(not p.ran for p in loop.snapshot()), 60, "a pass failing on the CA"
        )
        assert world.mirrors() == {}
        shutil.copy(world.remote.plane.ca_file, root / "ca.crt")  # the CA "rotates" into place
        _wait_for(lambda: world.mirror_name("first") in world.mirrors())

        # A new ServiceAccount uid invalidates every old token; the new one lands in the file.
        world.remote.delete("ServiceAccount", sa_ns, "ksm")
        world.remote.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "ksm", "namespace": sa_ns},
            }
        )
        token_file.write_text(world.remote.service_account_token(sa_ns, "ksm"))
        world.service("second")
        _wait_for(lambda: world.mirror_name("second") in world.mirrors())
    finally:
        code = loop.stop()
    assert code == 0
    logged = "\n".join(loop.messages())
    assert "certificate verify failed" in logged or "CERTIFICATE_VERIFY_FAILED" in logged
    assert old_token not in logged


BAD = [
    ("token file unreadable", {"token": None}, 2, "cannot read the token file"),
    ("not a bearer token", {"token": "Bearer abc def"}, 2, "is not a valid token"),
    ("CA URL does not answer", {"ca_url": "http://127.0.0.1:9/ca.crt"}, 3, "cannot fetch the CA"),
    ("CA is not PEM", {"ca_text": "hello"}, 3, "the answer is not a PEM certificate bundle"),
    ("no CA URL", {"ca_url": ""}, 2, "--remote-api-url needs --remote-ca-url"),
]


@pytest.mark.parametrize(("case", "setup", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_remote_credentials(
    world: World,
    served: tuple[Path, str],
    tmp_path: Path,
    case: str,
    setup: dict,
    status: int,
    message: str,
) -> None:
    root, url = served
    (root / "ca.crt").write_text(setup.get("ca_text") or world.remote.plane.ca_file.read_text())
    token_file = tmp_path / "token"
    if setup.get("token", "x") is not None:
        token_file.write_text(setup.get("token") or "abc")
    args = token_args(world, token_file, setup.get("ca_url", f"{url}/ca.crt"))
    if setup.get("ca_url") == "":
        i = args.index("--remote-ca-url")
        del args[i : i + 2]

    result = world.run(*args, defaults=False)

    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Bearer abc def" not in result.stderr
    assert world.writes() == []


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_a_config_files_local_context_is_found_as_kube_context_finds_it(
    world: World, tmp_path: Path
) -> None:
    """Issue 20: `local: {context: X}` without `kubeconfig` took in-cluster credentials and
    ignored KUBECONFIG; it is looked up as --kube-context X is: KUBECONFIG, in-cluster,
    ~/.kube/config. Here KUBECONFIG's current context is a dead end, X the local plane."""
    local = json.loads(Path(world.local.kubeconfig).read_text())
    dead = json.loads(json.dumps(local["clusters"][0]))
    dead["name"], dead["cluster"]["server"] = "dead", "https://127.0.0.1:9"
    local["clusters"].append(dead)
    local["contexts"] = [
        {"name": "elsewhere", "context": {"cluster": "dead", "user": local["users"][0]["name"]}},
        {"name": "the-local", "context": local["contexts"][0]["context"]},
    ]
    local["current-context"] = "elsewhere"
    kubeconfig = tmp_path / "merged.kubeconfig"
    kubeconfig.write_text(json.dumps(local))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "mirrorNamespace": world.mirror_ns,
        "local": {"context": "the-local"},
        "remotes": [{"name": "a", "prefix": world.prefix, "labelSelector": world.selector,
                     "kubeconfig": world.remote.kubeconfig}],
    }))  # fmt: skip
    world.service("web")

    result = run_cli(["once", "--config", str(config)], env={"KUBECONFIG": str(kubeconfig)})

    assert result.returncode == 0, result.stderr
    assert set(world.mirrors()) == {world.mirror_name("web")}
