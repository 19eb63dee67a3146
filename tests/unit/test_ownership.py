"""Ownership: the labels kube-service-mirror's users rely on, and who holds a taken name."""

from __future__ import annotations

from ksm_sync import ownership
from ksm_sync.model import Meta, Ref


def test_selector_matches_the_go_labels() -> None:
    assert ownership.selector("east") == "mirrored-svc=true,mirror-svc-prefix-sync=east"


def test_only_both_labels_with_this_prefix_make_an_object_ours() -> None:
    ours = ownership.mirror_meta("m", "mirrors", "east", Ref("shop", "web"))
    assert ownership.owned(ours, "east", "Service")
    assert not ownership.owned(ours, "west", "Service")
    assert not ownership.owned(
        Meta(Ref("mirrors", "m"), labels=(("mirrored-svc", "true"),)), "east", "Service"
    )
    assert ownership.remote_of(ours) == Ref("shop", "web")
    assert ownership.remote_of(Meta(Ref("mirrors", "m"))) is None  # a Go program's mirror


def test_holder_of_a_taken_name() -> None:
    ours = ownership.mirror_meta("m", "mirrors", "east", Ref("shop", "web"))
    west = ownership.mirror_meta("m", "mirrors", "west", Ref("shop", "web"))
    assert ownership.holder(ours, ours, "Service") == "ours"
    assert ownership.holder(ours, west, "Service") == "theirs"
    assert ownership.holder(None, ours, "Service") == "gone"


def test_a_slice_with_our_labels_is_ours_only_if_ksm_sync_manages_it() -> None:
    """Issue 20: the EndpointSliceMirroring controller copies an Endpoints mirror's labels,
    ours included, onto the slices it makes of it; those slices are the controller's."""
    ours = ownership.slice_meta("m-1", "mirrors", "east", Ref("shop", "web"), "m")
    assert ownership.owned(ours, "east", "EndpointSlice")
    controllers = Meta(
        Ref("mirrors", "m-abcde"),
        labels=(
            *ownership.labels("east").items(),
            ("endpointslice.kubernetes.io/managed-by", "endpointslicemirroring-controller.k8s.io"),
            ("kubernetes.io/service-name", "m"),
        ),
    )
    assert not ownership.owned(controllers, "east", "EndpointSlice")
    assert ownership.holder(controllers, ours, "EndpointSlice") == "theirs"
    assert ownership.selector("east", kind="EndpointSlice") == (
        "mirrored-svc=true,mirror-svc-prefix-sync=east,endpointslice.kubernetes.io/managed-by=ksm-sync"
    )
