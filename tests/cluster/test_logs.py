"""Logs: with --log-format json every line is one object, every change of a pass is there,
with its fields, and no token ever is, at any level."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.support.cluster import Cluster, service
from tests.support.world import World

LONG_NAME = "this-name-is-far-too-long-to-mirror"
SUBSETS = [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "http", "port": 8080}]}]
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _service_account(remote: Cluster, namespace: str, name: str, *, can_read: bool) -> str:
    """A real token of a ServiceAccount that may (or may not) get and list Services, Endpoints."""
    remote.create({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": namespace}})  # fmt: skip
    if can_read:
        role = f"{namespace}-{name}"
        remote.request("POST", f"{RBAC}/clusterroles", {
            "metadata": {"name": role},
            "rules": [{"apiGroups": [""], "resources": ["services", "endpoints"],
                       "verbs": ["get", "list"]}],
        })  # fmt: skip
        remote.request("POST", f"{RBAC}/clusterrolebindings", {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        })  # fmt: skip
    token = remote.service_account_token(namespace, name)
    if can_read:  # the authorizer learns of the binding through a watch: wait for it
        deadline = time.monotonic() + 30
        while True:
            try:
                remote.as_token(token).request("GET", "/api/v1/services?limit=1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return token


def _token_args(world: World, token_file: Path) -> list[str]:
    return [
        "--remote-api-url", world.remote.plane.url,
        "--remote-ca-url", str(world.remote.plane.ca_file),
        "--remote-sa-token-path", str(token_file),
        "--kube-config", world.local.kubeconfig,
        "--mirror-ns", world.mirror_ns,
        "--label-selector", world.selector,
        "--svc-prefix", world.prefix,
        "--endpoints-api", world.endpoints_api,
        "--log-level", "debug",
    ]  # fmt: skip


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is one object
    for line in lines:
        assert {"time", "level", "message"} <= set(line), line
    return lines


def _assert_no_secret(token: str, *outputs: str) -> None:
    signature = token.rsplit(".", 1)[-1]
    for output in outputs:
        assert token not in output
        assert signature not in output


def test_json_logs_hold_every_change_of_a_pass_and_no_token(world: World, tmp_path: Path) -> None:
    for name in ("steady", "web", "api", "gone"):
        world.service(name)
    world.endpoints("gone", SUBSETS)
    assert world.run().returncode == 0
    # Now one of each: update, recreate, delete, create, skip, conflict, and one unchanged.
    world.service("web", ports=[{"name": "http", "port": 81}])
    world.remote.delete("Service", world.remote_ns, "api")
    world.service("api", clusterIP="None")
    world.remote.delete("Service", world.remote_ns, "gone")  # its Endpoints go with it
    world.service("new")
    world.service(LONG_NAME)
    world.service("taken")
    world.local.create(service(world.mirror_ns, world.mirror_name("taken"), labels={"o": "x"}))
    token = _service_account(world.remote, world.remote_ns, "mirror", can_read=True)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    writes_before = len(world.writes())

    result = world.run(*_token_args(world, token_file), "--log-format", "json", defaults=False)

    assert result.returncode == 1, result.stderr
    _assert_no_secret(token, result.stdout, result.stderr)
    lines = _json_lines(result.stderr)
    pass_lines = [line for line in lines if "pass_id" in line]
    assert len({line["pass_id"] for line in pass_lines}) == 1
    changes = {
        (line["object"], line["change"], line["result"]) for line in lines if "change" in line
    }
    m = world.mirror_name
    assert changes == {
        (f"Service/{m('web')}", "update", "done"),
        (f"Service/{m('api')}", "recreate", "done"),
        (f"Service/{m('gone')}", "delete", "done"),
        (f"Endpoints/{m('gone')}", "delete", "done"),
        (f"Service/{m('new')}", "create", "done"),
        (f"Service/{m(LONG_NAME)}", "skip", "skipped"),
        (f"Service/{m('taken')}", "create", "conflict"),
    }
    for line in lines:
        if "change" in line:
            assert line["reason"] and line["remote"].startswith(world.remote_ns), line
            assert line["level"] == ("info" if line["result"] == "done" else "warning"), line
    # Every write the local API server saw from this pass is among the logged changes.
    verbs = {
        "create": {"create", "recreate"},
        "patch": {"update"},
        "delete": {"delete", "recreate"},
    }
    kinds = {"services": "Service", "endpoints": "Endpoints"}
    logged = {(obj, change) for obj, change, _ in changes}
    writes = [w for w in world.writes()[writes_before:] if w["userAgent"].startswith("ksm-sync/")]
    assert writes
    for write in writes:
        obj = f"{kinds[write['objectRef']['resource']]}/{write['objectRef']['name']}"
        assert any((obj, change) in logged for change in verbs[write["verb"]]), write
    [summary] = [line for line in lines if "counts" in line]
    assert summary["pass_result"] == "partial" and summary["exit_code"] == 1
    # empty: the five mirrors whose remote has no Endpoints (gone's went with it)
    assert summary["counts"] == {"created": 1, "updated": 1, "recreated": 1, "deleted": 1,
                                 "unchanged": 1, "conflicts": 1, "skipped": 1, "failed": 0,
                                 "held": 0, "raced": 0, "abandoned": 0, "empty": 5,
                                 "absent": 0}  # fmt: skip
    assert summary["objects"]["remote_services"] == 6
    assert summary["objects"]["local_services"] == 4


def test_a_refused_token_is_reported_and_never_shown(world: World, tmp_path: Path) -> None:
    world.service("web")
    token = _service_account(world.remote, world.remote_ns, "nobody", can_read=False)
    token_file = tmp_path / "token"
    token_file.write_text(token)

    result = world.run(*_token_args(world, token_file), defaults=False)

    assert result.returncode == 3
    assert "403" in result.stderr and "check the remote credentials" in result.stderr
    _assert_no_secret(token, result.stdout, result.stderr)
