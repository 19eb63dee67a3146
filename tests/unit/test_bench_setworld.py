"""The cluster set bench's floor writes what ksm-sync writes: its restated names, selectors and
bodies against ksm-sync's own, for one export of the bench's world, with no cluster."""

from __future__ import annotations

from dataclasses import replace

from bench import setworld, world
from ksm_sync import ownership
from ksm_sync.clusterset import Member, merge_imports
from ksm_sync.model import (
    conditions_to_api,
    export_from_api,
    import_status_to_api,
    import_to_api,
    service_from_api,
    service_to_api,
    slice_from_api,
    slice_to_api,
)
from ksm_sync.naming import derived_name, mcs_slice_name
from ksm_sync.observe import OWN_SERVICES, OWN_SLICES, Exported, Imported

NOW = 1_800_000_000.0
STAMP = "2027-01-15T08:00:00Z"  # NOW, as conditions carry it


def served(obj: dict, **extra: object) -> dict:
    """obj as the API server answers it: with the fields it fills in."""
    meta = {**obj["metadata"], "uid": "u", "resourceVersion": "7", "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    return {**obj, "metadata": meta, **extra}


def test_names_and_selectors_are_ksm_syncs() -> None:
    assert setworld.derived_name("bench-3", "svc-00123") == derived_name("bench-3", "svc-00123")
    assert setworld.mcs_slice_name("svc-1", "west", "svc-1-1") == mcs_slice_name(
        "svc-1", "west", "svc-1-1"
    )
    assert setworld.OWN_SLICES == OWN_SLICES
    assert setworld.OWN_SERVICES == OWN_SERVICES
    assert setworld.ours("east") == ownership.clusterset_selector("east", "ServiceImport")
    assert setworld.ours("east", True) == ownership.clusterset_selector("east", "EndpointSlice")


def test_the_floors_bodies_are_those_ksm_sync_writes() -> None:
    i = 7
    body = world.remote_service(i)
    spec = {**body["spec"], "ipFamilies": ["IPv4"], "internalTrafficPolicy": "Cluster",
            "ports": [{**p, "protocol": "TCP"} for p in body["spec"]["ports"]]}  # fmt: skip
    service = served(body, spec=spec)
    source = served(world.remote_slice(i))
    export = served(setworld.export_body(i))
    member = Exported((export_from_api(export),), (service_from_api(service),),
                      (slice_from_api(source),), "v1beta1")  # fmt: skip
    merged = merge_imports([Member("east", member)], "east", Imported(namespaces=frozenset(
        world.remote_namespaces())), now=NOW, unreachable_after=60)  # fmt: skip
    [want] = merged.imports.values()
    assert want.derived is not None

    derived = setworld.derived_body(service, "east")
    assert derived == service_to_api(want.derived)
    given = {"metadata": derived["metadata"],
             "spec": {"clusterIPs": ["10.112.0.9"], "ipFamilies": ["IPv4"]}}  # fmt: skip
    service_import = replace(want.service_import, ips=("10.112.0.9",), ip_families=("IPv4",))
    assert setworld.import_body(service, "east", "v1beta1", given) == import_to_api(
        service_import, "v1beta1"
    )
    assert setworld.import_status(served({"metadata": {}}), "east")["status"] == (
        import_status_to_api(want.service_import)
    )
    [mcs_slice] = want.slices
    assert setworld.slice_body(source, "svc-00007", "east", "east") == slice_to_api(mcs_slice)
    [status] = merged.statuses
    assert setworld.export_status(export, STAMP)["status"]["conditions"] == conditions_to_api(
        status.conditions
    )
