"""A neuron's full list of (text, value) pairs for one feature kind: what is explained and scored.

A `Target` holds the raw values (activations or weights) and the texts they belong to; the
scaled integers that prompts show and that scores are computed against are derived from them,
scaled over the *whole* list so that a subset's numbers mean the same as the full neuron's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from vse.core.scaling import flip_negative, scale_signed, scale_to_int
from vse.core.vocab import Kind, Polarity, choices

POLARITIES = choices(Polarity)


@dataclass(frozen=True)
class Pair:
    """One line a prompt shows: a text (caption, class name or concept) and its scaled value."""

    text: str
    value: int


def check_kind(kind: str) -> Kind:
    """The feature kind named ``kind``, with a clear error for anything else."""
    try:
        return Kind(kind)
    except ValueError:
        raise ValueError(f"unknown feature kind {kind!r}; known: {', '.join(choices(Kind))}") from None


def parse_neuron_id(neuron: str) -> tuple[str, str, int]:
    """``MODEL/LAYER/INDEX`` -> (model, layer, index), with a clear error for anything else.

    ``"efficientnet_lite0/_conv_head/489"`` -> ``("efficientnet_lite0", "_conv_head", 489)``.
    """
    parts = neuron.split("/")
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        raise ValueError(f"neuron id {neuron!r} is not MODEL/LAYER/INDEX (e.g. efficientnet_lite0/_conv_head/489)")
    return parts[0], parts[1], int(parts[2])


def neuron_id(model: str, layer: str, index: int) -> str:
    """(model, layer, index) -> ``MODEL/LAYER/INDEX``: the inverse of `parse_neuron_id`."""
    return f"{model}/{layer}/{index}"


def neuron_stem(model: str, layer: str, unit: int | str) -> str:
    """A file-name-safe name of a neuron, ``MODEL__LAYER__UNIT``: the stem of its cassettes and atlas card.

    For a neuron id: ``neuron_stem(*parse_neuron_id(neuron))``.
    """
    return f"{model}__{layer}__{unit}"


@dataclass(frozen=True)
class Target:
    """One neuron seen through one feature kind.

    neuron: the stable id ``MODEL/LAYER/INDEX``.
    kind: "weight-label", "weight-clip" or "caption-activation".
    texts: one text per value (class names, next-layer labels or image captions).
    raw: the raw values, same length as texts.
    polarity: "positive" (negatives become 0, the paper's default), "negative" (flipped, App.
        C.3.1) or "both" (signed -10..10, App. C.3.2).
    """

    neuron: str
    kind: str
    texts: tuple[str, ...]
    raw: np.ndarray = field(repr=False)
    polarity: str = Polarity.POSITIVE

    def __post_init__(self) -> None:
        check_kind(self.kind)
        parse_neuron_id(self.neuron)
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity {self.polarity!r} is not one of {POLARITIES}")
        if len(self.texts) != len(self.raw):
            raise ValueError(f"{self.neuron}: {len(self.texts)} texts but {len(self.raw)} values")

    @property
    def name(self) -> str:
        """How prompts call the neuron: its unit index, as the paper does."""
        return self.neuron.rsplit("/", 1)[1]

    @property
    def signed(self) -> bool:
        return self.polarity == Polarity.BOTH

    @cached_property
    def values(self) -> np.ndarray:
        """The scaled integers (0..10, or -10..10 when signed)."""
        if self.polarity == Polarity.BOTH:
            return scale_signed(self.raw)
        if self.polarity == Polarity.NEGATIVE:
            return scale_to_int(flip_negative(self.raw))
        return scale_to_int(self.raw)

    @cached_property
    def strength(self) -> np.ndarray:
        """The raw values oriented like `values` (negative polarity flipped): an order without the
        ties of the scaled integers, which it refines (scaling is monotone)."""
        return -self.raw if self.polarity == Polarity.NEGATIVE else np.asarray(self.raw, dtype=np.float64)

    def pairs(self, indices: Sequence[int]) -> tuple[Pair, ...]:
        return tuple(Pair(self.texts[i], int(self.values[i])) for i in indices)
