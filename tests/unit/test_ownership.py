"""Ownership: the labels kube-service-mirror's users rely on, and who holds a taken name."""

from __future__ import annotations

from ksm_sync import ownership
from ksm_sync.model import Meta, Ref


def test_selector_matches_the_go_labels() -> None:
    assert ownership.selector("east") == "mirrored-svc=true,mirror-svc-prefix-sync=east"


def test_only_both_labels_with_this_prefix_make_an_object_ours() -> None:
    ours = ownership.mirror_meta("m", "mirrors", "east", Ref("shop", "web"))
    assert ownership.owned(ours, "east")
    assert not ownership.owned(ours, "west")
    assert not ownership.owned(
        Meta(Ref("mirrors", "m"), labels=(("mirrored-svc", "true"),)), "east"
    )
    assert ownership.remote_of(ours) == Ref("shop", "web")
    assert ownership.remote_of(Meta(Ref("mirrors", "m"))) is None  # a Go program's mirror


def test_holder_of_a_taken_name() -> None:
    ours = ownership.mirror_meta("m", "mirrors", "east", Ref("shop", "web"))
    assert ownership.holder(ours, "east") == "ours"
    assert ownership.holder(ours, "west") == "theirs"
    assert ownership.holder(None, "east") == "gone"
