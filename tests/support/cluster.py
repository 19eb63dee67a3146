"""A small admin client for tests: raw JSON over the control plane's TLS, standard library only.

Tests set up and inspect the world with it; ksm-sync itself is always run through its CLI.
"""

from __future__ import annotations

import json
import secrets
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.support.controlplane import PLANE_USERS, ControlPlane

Json = dict[str, Any]
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class Cluster:
    """The admin of a control plane, or, with token, the identity that token belongs to."""

    plane: ControlPlane
    token: str | None = None

    def as_token(self, token: str) -> Cluster:
        return Cluster(self.plane, token)

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A real token from the TokenRequest API."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}}  # fmt: skip
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        return self.request("POST", path, body)["status"]["token"]

    @property
    def name(self) -> str:
        return self.plane.name

    @property
    def kubeconfig(self) -> str:
        return str(self.plane.kubeconfig)

    def request(
        self,
        method: str,
        path: str,
        body: Json | list | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Json:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {
            "Content-Type": content_type,
            "Accept": "application/json",
            **(headers or {}),
        }
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
            context = ssl.create_default_context(cafile=str(self.plane.ca_file))
        else:
            context = self.plane.admin_ssl_context()
        request = urllib.request.Request(self.plane.url + path, data, all_headers, method=method)
        try:
            with urllib.request.urlopen(request, context=context, timeout=60) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise HttpError(error.code, error.read().decode(errors="replace")) from None

    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        return name

    def create(self, obj: Json) -> Json:
        return self.request("POST", _collection(obj), obj)

    def apply(self, obj: Json) -> Json:
        """Creates obj, or replaces the object of that name."""
        try:
            return self.create(obj)
        except HttpError as error:
            if error.status != 409:
                raise
        current = self.get(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        replacement = {**obj, "metadata": {**obj["metadata"],
                       "resourceVersion": current["metadata"]["resourceVersion"]}}  # fmt: skip
        if obj["kind"] == "Service":
            spec = dict(replacement.get("spec") or {})
            if "clusterIP" not in spec and current["spec"].get("clusterIP") not in (None, "None"):
                spec["clusterIP"] = current["spec"]["clusterIP"]
            replacement["spec"] = spec
        return self.request("PUT", _path(obj["kind"], obj["metadata"]["namespace"],
                                         obj["metadata"]["name"]), replacement)  # fmt: skip

    def get(self, kind: str, namespace: str, name: str) -> Json:
        return self.request("GET", _path(kind, namespace, name))

    def find(self, kind: str, namespace: str, name: str) -> Json | None:
        try:
            return self.get(kind, namespace, name)
        except HttpError as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, selector: str = "") -> list[Json]:
        path = _path(kind, namespace)
        if selector:
            path += "?labelSelector=" + urllib.request.quote(selector)
        return self.request("GET", path)["items"]

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.request("DELETE", _path(kind, namespace, name))

    def audit(self) -> list[Json]:
        """Every request the audit log recorded as answered (Services, Endpoints, slices)."""
        events = (json.loads(line) for line in self.plane.audit_log.read_text().splitlines())
        return [e for e in events if e.get("stage") == "ResponseComplete"]

    def writes(self, namespace: str) -> list[Json]:
        """Write requests on Services, Endpoints and EndpointSlices in namespace, from the audit
        log, but for those of the plane's own controllers (which, for one, delete a deleted
        Service's Endpoints too)."""
        events = []
        for line in self.plane.audit_log.read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (
                ref.get("namespace") == namespace
                and ref.get("resource") in ("services", "endpoints", "endpointslices")
                and event.get("verb") in WRITE_VERBS
                and event.get("user", {}).get("username") not in PLANE_USERS
            ):
                events.append(event)
        return events


_RESOURCES = {"Service": "services", "Endpoints": "endpoints", "ServiceAccount": "serviceaccounts",
              "Secret": "secrets", "ConfigMap": "configmaps"}  # fmt: skip


def _path(kind: str, namespace: str, name: str = "") -> str:
    if kind == "EndpointSlice":
        path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
    else:
        path = f"/api/v1/namespaces/{namespace}/{_RESOURCES[kind]}"
    return f"{path}/{name}" if name else path


def _collection(obj: Json) -> str:
    return _path(obj["kind"], obj["metadata"]["namespace"])


def service(namespace: str, name: str, *, labels: dict[str, str] | None = None,
            ports: list[Json] | None = None, **spec: Any) -> Json:  # fmt: skip
    """A remote Service; labels default to the selector the tests mirror with."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"mirror": "yes"}},
        "spec": {"ports": ports if ports is not None else [{"name": "http", "port": 80}], **spec},
    }


def endpoints(namespace: str, name: str, subsets: list[Json], *,
              labels: dict[str, str] | None = None) -> Json:  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"mirror": "yes"}},
        "subsets": subsets,
    }


def endpoint_slice(namespace: str, service_name: str, name: str, endpoints: list[Json], *,
                   labels: dict[str, str], ports: list[Json] | None = None,
                   address_type: str = "IPv4") -> Json:  # fmt: skip
    """A remote EndpointSlice of service_name, as a slice controller would write it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {**labels, "kubernetes.io/service-name": service_name,
                                "endpointslice.kubernetes.io/managed-by": "tests.ksm-sync"}},
        "addressType": address_type,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080,
                                                   "protocol": "TCP"}],
        "endpoints": endpoints,
    }  # fmt: skip
