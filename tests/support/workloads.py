"""Real workloads on a control plane: Deployments and StatefulSets whose pods kwok runs.

The plane's controllers make the pods, and the Endpoints and EndpointSlices from them; kwok makes
each pod Running and Ready with an IP from the plane's pod range (tests/support/kwok.yaml). A test
changes a pod's state the way a kubelet would report it:

- not ready: `make_not_ready` sets the pod's Ready condition to False through its status
  subresource. kwok only acts on Pending pods, so the pod stays Running and not ready, and the
  endpoints controllers move it to the not-ready addresses.
- terminating: `hold_terminating` puts a finalizer on the pod and deletes it. kwok removes a
  deleted pod at once, but the finalizer keeps it, with its deletionTimestamp, until `release`:
  EndpointSlices show it `terminating` (and `serving` while it is Ready), Endpoints leave it out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tests.support.cluster import Cluster, HttpError, Json

T = TypeVar("T")
HOLD = "ksm-sync.test/hold"
TIMEOUT = 30.0


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
    """Polls probe until it returns something other than None or False; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _pod_template(app: str) -> Json:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": f"registry.example/{app}:1"}]},
    }


def _create(cluster: Cluster, namespace: str, kind: str, body: Json) -> Json:
    # Pods are admitted once the serviceaccount controller made the namespace's account.
    account = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
    wait_for(f"the default ServiceAccount of {namespace}", lambda: _found(cluster, account))
    return cluster.request("POST", f"/apis/apps/v1/namespaces/{namespace}/{kind}", body)


def _found(cluster: Cluster, path: str) -> bool:
    try:
        cluster.request("GET", path)
    except HttpError as error:
        if error.status == 404:
            return False
        raise
    return True


def deployment(cluster: Cluster, namespace: str, name: str, replicas: int) -> Json:
    """A Deployment of pods labelled app=<name>."""
    return _create(cluster, namespace, "deployments", {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": _pod_template(name)},
    })  # fmt: skip


def statefulset(cluster: Cluster, namespace: str, name: str, replicas: int) -> Json:
    """A StatefulSet of pods <name>-0, <name>-1, ... labelled app=<name>, whose governing
    Service is <name>: each pod's hostname is its name, published by the Endpoints."""
    return _create(cluster, namespace, "statefulsets", {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": name}}, "template": _pod_template(name)},
    })  # fmt: skip


def scale(cluster: Cluster, namespace: str, kind: str, name: str, replicas: int) -> None:
    """kind: deployments or statefulsets."""
    cluster.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/{kind}/{name}",
                    {"spec": {"replicas": replicas}},
                    content_type="application/merge-patch+json")  # fmt: skip


def pods(cluster: Cluster, namespace: str, app: str) -> list[Json]:
    return cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3D{app}")[
        "items"
    ]


def is_ready(pod: Json) -> bool:
    conditions = pod.get("status", {}).get("conditions", ())
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(cluster: Cluster, namespace: str, app: str, count: int) -> dict[str, str]:
    """Waits until exactly count pods of app exist, all Ready with an IP; their IPs by name."""

    def probe() -> dict[str, str] | None:
        found = pods(cluster, namespace, app)
        if len(found) == count and all(is_ready(p) and p["status"].get("podIP") for p in found):
            return {p["metadata"]["name"]: p["status"]["podIP"] for p in found}
        return None

    return wait_for(f"{count} ready pods of {namespace}/{app}", probe)


def endpoint_ips(cluster: Cluster, namespace: str, name: str) -> tuple[set[str], set[str]]:
    """The ready and not-ready addresses of the Endpoints namespace/name."""
    found = cluster.find("Endpoints", namespace, name) or {}
    ready, not_ready = set(), set()
    for subset in found.get("subsets") or ():
        ready |= {a["ip"] for a in subset.get("addresses") or ()}
        not_ready |= {a["ip"] for a in subset.get("notReadyAddresses") or ()}
    return ready, not_ready


def slice_ready_ips(cluster: Cluster, namespace: str, name: str) -> set[str]:
    """The ready addresses of the EndpointSlices of Service namespace/name."""
    selector = f"kubernetes.io/service-name={name}"
    return {
        address
        for found in cluster.list("EndpointSlice", namespace, selector)
        for endpoint in found.get("endpoints") or ()
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint["addresses"]
    }


def wait_slices(cluster: Cluster, namespace: str, name: str, ready: set[str]) -> None:
    """Waits until the slices of Service namespace/name hold exactly these ready addresses
    (from hand-written Endpoints, the EndpointSliceMirroring controller writes them)."""
    wait_for(f"EndpointSlices of {namespace}/{name} with {sorted(ready)} ready",
             lambda: slice_ready_ips(cluster, namespace, name) == ready)  # fmt: skip


def wait_endpoints(
    cluster: Cluster,
    namespace: str,
    name: str,
    ready: set[str],
    not_ready: frozenset[str] = frozenset(),
) -> None:
    """Waits until the endpoints controller wrote exactly these addresses, and the slice
    controller (separately, at its own pace) the same ready ones."""
    wait_for(f"Endpoints {namespace}/{name} with {sorted(ready)} ready, {sorted(not_ready)} not",
             lambda: endpoint_ips(cluster, namespace, name) == (ready, set(not_ready))
             and slice_ready_ips(cluster, namespace, name) == ready)  # fmt: skip


def make_not_ready(cluster: Cluster, namespace: str, pod: str) -> None:
    """The pod's Ready condition turns False, as a failing readiness probe would make it."""
    conditions = [{"type": t, "status": "False", "reason": "ReadinessProbeFailed"}
                  for t in ("ContainersReady", "Ready")]  # fmt: skip
    cluster.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod}/status",
                    {"status": {"conditions": conditions}},
                    content_type="application/strategic-merge-patch+json")  # fmt: skip


def hold_terminating(cluster: Cluster, namespace: str, pod: str) -> None:
    """Deletes the pod and keeps it terminating, as a pod in its grace period, until release."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
    cluster.request("PATCH", path, {"metadata": {"finalizers": [HOLD]}},
                    content_type="application/merge-patch+json")  # fmt: skip
    cluster.request("DELETE", path)


def release(cluster: Cluster, namespace: str, pod: str) -> None:
    """Lets a pod held terminating go."""
    cluster.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod}",
                    {"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json")  # fmt: skip
