"""Which video sources one receiver gets, and at which simulcast layer.

From what the receiver's page shows (last-N, pins, tile sizes), the speaker ranking, and
optionally a bandwidth budget; and, over all receivers, which layers each publisher must
keep sending. Pure functions of their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReceiverView:
    """What one receiver asks for, as its page last said."""

    last_n: int | None = None
    """At most this many sources get video; None for no limit."""
    pinned: Sequence[str] = ()
    """Sources the page pins or puts on stage, first first; they come before speakers."""
    tiles: Mapping[str, int] = field(default_factory=dict)
    """Source id -> the height its tile is shown at, in device pixels (CSS pixels times
    devicePixelRatio). A source not here (or at 0) is not on screen."""
    budget: int | None = None
    """Bits a second the receiver's link can take for video; None for no limit."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """What one receiver gets."""

    layers: dict[str, int | None]
    """Every source -> the spatial layer to forward (0 lowest), or None for no video."""
    selected: list[str]
    """The last-N set, in priority order: those the page may show video for. It may
    include sources that get no video, being off screen or suspended."""
    suspended: list[str]
    """Sources selected and on screen that get no video because the budget ran out."""


def allocate(
    view: ReceiverView,
    layers: Mapping[str, Sequence[int]],
    ranking: Sequence[str],
    bitrates: Mapping[str, Sequence[int]] | None = None,
) -> Allocation:
    """The layers one receiver gets.

    `layers`: every source it could receive (not its own), in a stable order such as
    publication order -> the heights of the source's spatial layers, lowest first.
    `ranking`: speakers, most relevant first (SpeakerRanking.ranking); an entry names a
    source or a participant, whose sources ('<participant id>:<kind>') it then ranks.
    `bitrates`: source -> bits a second of each spatial layer; needed with a budget,
    and a ValueError without one for a selected source on screen.

    The last-N set is the pinned sources, then those ranked, then the rest, up to
    last_n. A selected source on screen gets the smallest layer at least as tall as its
    tile (the top layer if none is); one off screen gets no video, but keeps its place
    in the set, so that scrolling a gallery does not reshuffle who is in it.
    """
    selected = _last_n(view, layers, ranking)
    ideal: dict[str, int] = {}
    for source in selected:
        layer = ideal_layer(layers[source], view.tiles.get(source, 0))
        if layer is not None:
            ideal[source] = layer
    allocated: dict[str, int | None] = dict.fromkeys(layers)
    if view.budget is None:
        allocated.update(ideal)
        return Allocation(allocated, selected, [])
    fitted = _fit(ideal, view.budget, bitrates or {})
    allocated.update(fitted)
    suspended = [source for source in ideal if source not in fitted]
    return Allocation(allocated, selected, suspended)


def needed_layers(allocations: Iterable[Allocation]) -> dict[str, set[int]]:
    """Source -> the spatial layers some receiver gets; the others can be paused at the
    publisher. A source every receiver gets nothing of maps to an empty set."""
    needed: dict[str, set[int]] = {}
    for allocation in allocations:
        for source, layer in allocation.layers.items():
            layers = needed.setdefault(source, set())
            if layer is not None:
                layers.add(layer)
    return needed


def _last_n(
    view: ReceiverView, layers: Mapping[str, Sequence[int]], ranking: Sequence[str]
) -> list[str]:
    """Pinned, then ranked, then the rest in the order of `layers`; at most last_n."""
    rank: dict[str, int] = {}
    for position, ranked in enumerate(ranking):
        rank.setdefault(ranked, position)
    unranked = len(ranking)

    def priority(source: str) -> int:
        participant = source.partition(":")[0]
        return min(rank.get(source, unranked), rank.get(participant, unranked))

    order = dict.fromkeys(source for source in view.pinned if source in layers)
    order.update(dict.fromkeys(sorted(layers, key=priority)))  # sorted() is stable
    selected = list(order)
    return selected if view.last_n is None else selected[: max(view.last_n, 0)]


def ideal_layer(heights: Sequence[int], tile_height: int) -> int | None:
    """The smallest layer at least as tall as the tile, else the top one; None for a
    tile not on screen or a source without layers."""
    if tile_height <= 0 or not heights:
        return None
    for layer, height in enumerate(heights):
        if height >= tile_height:
            return layer
    return len(heights) - 1


def _fit(
    ideal: dict[str, int], budget: int, bitrates: Mapping[str, Sequence[int]]
) -> dict[str, int]:
    """Greedy, as Jitsi's BandwidthAllocator: in priority order, each source its lowest
    layer while the budget allows (one that does not fit is left out, and a cheaper one
    after it may still fit); then, again in priority order, each raised a layer at a
    time toward its ideal while the next layer fits."""
    for source, layer in ideal.items():
        if len(bitrates.get(source, ())) <= layer:
            raise ValueError(f"no bitrate for layer {layer} of {source}")
    remaining = budget
    fitted: dict[str, int] = {}
    for source in ideal:
        cost = bitrates[source][0]
        if cost <= remaining:
            fitted[source] = 0
            remaining -= cost
    for source, layer in fitted.items():
        rates = bitrates[source]
        while layer < ideal[source] and rates[layer + 1] - rates[layer] <= remaining:
            remaining -= rates[layer + 1] - rates[layer]
            layer += 1
        fitted[source] = layer
    return fitted
