"""Layer allocation: last-N order, the layer for a tile, the greedy budget, paused layers."""

from __future__ import annotations

import pytest

from confide.sfu.allocation import Allocation, ReceiverView, allocate, needed_layers

HEIGHTS = [180, 360, 720]
BITRATES = [150_000, 500_000, 1_500_000]
CAMERAS = ["alice:camera", "bob:camera", "carol:camera", "dave:camera", "erin:camera"]


def sources(*source_ids: str, heights: list[int] = HEIGHTS) -> dict[str, list[int]]:
    return {source_id: heights for source_id in source_ids}


def on_screen(*source_ids: str, height: int = 720) -> dict[str, int]:
    return {source_id: height for source_id in source_ids}


# Last-N.


def test_last_n_takes_pinned_then_ranked_then_the_rest_in_stable_order() -> None:
    view = ReceiverView(pinned=["erin:camera"], tiles=on_screen(*CAMERAS))
    allocation = allocate(view, sources(*CAMERAS), ["carol", "alice"])
    assert allocation.selected == [
        "erin:camera",
        "carol:camera",
        "alice:camera",
        "bob:camera",
        "dave:camera",
    ]


def test_outside_last_n_there_is_no_video() -> None:
    view = ReceiverView(last_n=3, pinned=["erin:camera"], tiles=on_screen(*CAMERAS))
    allocation = allocate(view, sources(*CAMERAS), ["carol", "alice", "bob"])
    assert allocation.selected == ["erin:camera", "carol:camera", "alice:camera"]
    assert allocation.layers == {
        "alice:camera": 2,
        "bob:camera": None,
        "carol:camera": 2,
        "dave:camera": None,
        "erin:camera": 2,
    }


def test_a_pinned_speaker_is_not_counted_twice() -> None:
    view = ReceiverView(last_n=2, pinned=["carol:camera"], tiles=on_screen(*CAMERAS))
    allocation = allocate(view, sources(*CAMERAS), ["carol", "bob"])
    assert allocation.selected == ["carol:camera", "bob:camera"]


def test_a_pin_of_a_source_not_published_is_ignored() -> None:
    view = ReceiverView(last_n=1, pinned=["gone:camera"], tiles=on_screen(*CAMERAS))
    allocation = allocate(view, sources(*CAMERAS), ["bob"])
    assert allocation.selected == ["bob:camera"]


def test_ranking_a_participant_ranks_all_their_sources() -> None:
    published = sources("alice:camera", "bob:camera", "bob:screen")
    view = ReceiverView(last_n=2, tiles=on_screen(*published))
    allocation = allocate(view, published, ["bob", "alice"])
    assert allocation.selected == ["bob:camera", "bob:screen"]


def test_last_n_zero_gives_no_video() -> None:
    view = ReceiverView(last_n=0, tiles=on_screen(*CAMERAS))
    allocation = allocate(view, sources(*CAMERAS), ["alice"])
    assert allocation.selected == []
    assert set(allocation.layers.values()) == {None}


def test_a_source_off_screen_gets_no_video_but_keeps_its_last_n_place() -> None:
    view = ReceiverView(last_n=2, tiles=on_screen("bob:camera", "carol:camera"))
    allocation = allocate(view, sources(*CAMERAS), ["alice", "bob", "carol"])
    assert allocation.selected == ["alice:camera", "bob:camera"]
    assert allocation.layers["alice:camera"] is None
    assert allocation.layers["bob:camera"] == 2
    assert allocation.layers["carol:camera"] is None


# The layer for a tile.


@pytest.mark.parametrize(
    ("tile_height", "layer"),
    [(90, 0), (180, 0), (181, 1), (360, 1), (361, 2), (720, 2), (2160, 2)],
)
def test_the_smallest_layer_at_least_as_tall_as_the_tile(tile_height: int, layer: int) -> None:
    view = ReceiverView(tiles={"alice:camera": tile_height})
    allocation = allocate(view, sources("alice:camera"), [])
    assert allocation.layers == {"alice:camera": layer}


def test_a_tile_taller_than_every_layer_gets_the_top_one_there_is() -> None:
    view = ReceiverView(tiles={"alice:camera": 720})
    allocation = allocate(view, sources("alice:camera", heights=[180, 360]), [])
    assert allocation.layers == {"alice:camera": 1}


def test_a_source_without_layers_gets_no_video() -> None:
    view = ReceiverView(tiles={"alice:camera": 720})
    allocation = allocate(view, sources("alice:camera", heights=[]), [])
    assert allocation.layers == {"alice:camera": None}


# A bandwidth budget.


def test_budget_gives_everyone_the_lowest_layer_then_raises_in_priority_order() -> None:
    published = sources("alice:camera", "bob:camera", "carol:camera")
    view = ReceiverView(tiles=on_screen(*published), budget=2_300_000)
    bitrates = dict.fromkeys(published, BITRATES)
    allocation = allocate(view, published, ["alice", "bob", "carol"], bitrates)
    # 3 x 150k; alice up to 1.5M (1.85M left, 0.5M after), bob to 500k (150k after).
    assert allocation.layers == {"alice:camera": 2, "bob:camera": 1, "carol:camera": 0}
    assert allocation.suspended == []


def test_budget_raises_no_source_beyond_its_tile() -> None:
    published = sources("alice:camera", "bob:camera")
    view = ReceiverView(tiles={"alice:camera": 180, "bob:camera": 720}, budget=10_000_000)
    bitrates = dict.fromkeys(published, BITRATES)
    allocation = allocate(view, published, ["alice", "bob"], bitrates)
    assert allocation.layers == {"alice:camera": 0, "bob:camera": 2}


def test_what_does_not_fit_the_budget_is_suspended() -> None:
    published = sources("alice:camera", "bob:camera", "carol:camera")
    view = ReceiverView(tiles=on_screen(*published), budget=300_000)
    bitrates = dict.fromkeys(published, BITRATES)
    allocation = allocate(view, published, ["alice", "bob", "carol"], bitrates)
    assert allocation.layers == {"alice:camera": 0, "bob:camera": 0, "carol:camera": None}
    assert allocation.suspended == ["carol:camera"]


def test_a_cheaper_source_after_one_that_does_not_fit_still_gets_video() -> None:
    published = {"alice:screen": [720, 1080], "bob:camera": HEIGHTS}
    view = ReceiverView(tiles=on_screen(*published), budget=200_000)
    bitrates = {"alice:screen": [400_000, 1_000_000], "bob:camera": BITRATES}
    allocation = allocate(view, published, ["alice"], bitrates)
    assert allocation.layers == {"alice:screen": None, "bob:camera": 0}
    assert allocation.suspended == ["alice:screen"]


def test_a_budget_without_bitrates_is_an_error() -> None:
    view = ReceiverView(tiles=on_screen("alice:camera"), budget=1_000_000)
    with pytest.raises(ValueError, match="no bitrate for layer 2 of alice:camera"):
        allocate(view, sources("alice:camera"), [])


# Layers to keep at the publisher.


def test_needed_layers_are_the_union_over_receivers() -> None:
    allocations = [
        Allocation({"alice:camera": 0, "bob:camera": 1, "carol:camera": None}, [], []),
        Allocation({"alice:camera": 2, "bob:camera": 1, "carol:camera": None}, [], []),
    ]
    assert needed_layers(allocations) == {
        "alice:camera": {0, 2},
        "bob:camera": {1},
        "carol:camera": set(),
    }
