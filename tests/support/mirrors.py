"""What the mirrors of a test's remote namespace should be, worked out independently of ksm_sync.

Reliability tests compare the whole local state with this after faults, races and random
changes; deriving it with ksm_sync's own code would let a shared bug pass unnoticed.
"""

from __future__ import annotations

from typing import Any

from tests.support.cluster import Json

MAX_NAME = 63


def _service_shape(obj: Json) -> tuple[Any, ...]:
    spec = obj.get("spec") or {}
    ports = tuple(
        sorted(
            (p.get("name") or "", p["port"], p.get("protocol") or "TCP")
            for p in spec.get("ports") or ()
        )
    )
    if spec.get("type") == "ExternalName":
        return ("ExternalName", spec.get("externalName"), ports)
    return ("ClusterIP", spec.get("clusterIP") == "None", ports)


def _endpoints_shape(obj: Json | None) -> frozenset[tuple[Any, ...]] | None:
    if obj is None:
        return None
    out = set()
    for subset in obj.get("subsets") or ():
        ports = tuple(sorted((p.get("name") or "", p["port"], p.get("protocol") or "TCP")
                             for p in subset.get("ports") or ()))  # fmt: skip
        for ready, key in ((True, "addresses"), (False, "notReadyAddresses")):
            out |= {(ports, a["ip"], ready) for a in subset.get(key) or ()}
    return frozenset(out)


def expected(
    services: list[Json], endpoints: list[Json], prefix: str
) -> dict[str, tuple[Any, ...]]:
    """Mirror name -> (service shape, endpoints shape) for the remote objects given."""
    by_ref = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    out = {}
    for s in services:
        ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
        mirror = f"{prefix}-{name}-6d6972726f720a-{ns}"
        if len(mirror) > MAX_NAME:
            continue
        shape = _service_shape(s)
        eps = None if shape[0] == "ExternalName" else _endpoints_shape(by_ref.get((ns, name)))
        out[mirror] = (shape, eps)
    return out


def actual(services: list[Json], endpoints: list[Json]) -> dict[str, tuple[Any, ...]]:
    """The same shapes for the mirrors that exist (Endpoints without a Service included)."""
    by_name = {e["metadata"]["name"]: e for e in endpoints}
    out: dict[str, tuple[Any, ...]] = {
        s["metadata"]["name"]: (
            _service_shape(s),
            _endpoints_shape(by_name.pop(s["metadata"]["name"], None)),
        )
        for s in services
    }
    for name, e in by_name.items():
        out[name] = ("orphan Endpoints", _endpoints_shape(e))
    return out


def diff(want: dict[str, Any], have: dict[str, Any]) -> str:
    """A short account of how two states differ, for assertion messages."""
    lines = [f"missing {n}" for n in sorted(set(want) - set(have))]
    lines += [f"extra {n}" for n in sorted(set(have) - set(want))]
    lines += [f"differs {n}: want {want[n]} have {have[n]}" for n in sorted(set(want) & set(have))
              if want[n] != have[n]]  # fmt: skip
    return "\n".join(lines[:20]) + (f"\n... {len(lines) - 20} more" if len(lines) > 20 else "")
