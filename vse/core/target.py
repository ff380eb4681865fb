"""A neuron's full list of (text, value) pairs for one feature kind: what is explained and scored.

A `Target` holds the raw values (activations or weights) and the texts they belong to; the
scaled integers that prompts show and that scores are computed against are derived from them,
scaled over the *whole* list so that a subset's numbers mean the same as the full neuron's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from vse.core.scaling import flip_negative, scale_signed, scale_to_int
from vse.core.vocab import FeatureKind, Kind, Polarity, choices

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


@dataclass(frozen=True)
class Feature:
    """A unit space of a layer other than its channels: the latents of an SAE file or the vectors of a
    directions file (`FeatureKind`), named by the file as the user gave it.

    A unit of it has the id ``MODEL/LAYER/KIND:FILE/INDEX`` (``efficientnet_lite0/_conv_head/sae:sae.npz/17``,
    ``efficientnet_lite0/_blocks.15/dir:concepts.npy/3``); FILE may hold ``/`` (a path), never ``:`` first.
    """

    kind: FeatureKind
    file: str

    @property
    def spec(self) -> str:
        """``KIND:FILE``: the part of a unit id between the layer and the index."""
        return f"{self.kind.value}:{self.file}"

    @property
    def stem(self) -> str:
        """A file-name-safe short name: the kind and the file's name without folders or extension."""
        name = self.file.rsplit("/", 1)[-1].split(".", 1)[0] or "feature"
        return f"{self.kind.value}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def parse_feature(spec: str) -> Feature:
    """``"sae:FILE"`` / ``"dir:FILE"`` -> `Feature`, with a clear error for anything else."""
    kind, sep, file = spec.partition(":")
    if not sep or not file or kind not in choices(FeatureKind):
        raise ValueError(
            f"{spec!r} is not a feature of a layer: expected sae:FILE (an SAE's latents) or dir:FILE (directions)"
        )
    return Feature(FeatureKind(kind), file)


def split_layer(layer: str) -> tuple[str, Feature | None]:
    """A layer as `parse_neuron_id` gives it -> (the model's layer, its feature or None for channels):
    ``"_conv_head/sae:x.npz"`` -> ``("_conv_head", Feature(SAE, "x.npz"))``; ``"_conv_head"`` -> ``("_conv_head",
    None)``."""
    base, sep, rest = layer.partition("/")
    return (base, parse_feature(rest)) if sep else (layer, None)


def feature_layer(layer: str, feature: Feature | None) -> str:
    """The inverse of `split_layer`: ``LAYER`` or ``LAYER/KIND:FILE`` (what `neuron_id` takes)."""
    return layer if feature is None else f"{layer}/{feature.spec}"


def parse_neuron_id(neuron: str) -> tuple[str, str, int]:
    """``MODEL/LAYER/INDEX`` -> (model, layer, index), with a clear error for anything else.

    ``"efficientnet_lite0/_conv_head/489"`` -> ``("efficientnet_lite0", "_conv_head", 489)``. A unit of a
    feature (`Feature`), ``MODEL/LAYER/KIND:FILE/INDEX``, gives the layer as ``LAYER/KIND:FILE`` (`split_layer`
    takes it apart), so that `neuron_id` builds the same id back and a stem or record never confuses latent 17
    with channel 17.
    """
    parts = neuron.split("/")
    example = "e.g. efficientnet_lite0/_conv_head/489 or efficientnet_lite0/_conv_head/sae:FILE/17"
    if len(parts) < 3 or not all(parts) or not parts[-1].isdigit():
        raise ValueError(f"neuron id {neuron!r} is not MODEL/LAYER/INDEX ({example})")
    if len(parts) == 3:
        return parts[0], parts[1], int(parts[2])
    middle = "/".join(parts[2:-1])
    try:
        feature = parse_feature(middle)
    except ValueError as exc:
        raise ValueError(f"neuron id {neuron!r} is not MODEL/LAYER/INDEX nor a feature's unit: {exc}") from None
    return parts[0], feature_layer(parts[1], feature), int(parts[-1])


def neuron_id(model: str, layer: str, index: int) -> str:
    """(model, layer, index) -> ``MODEL/LAYER/INDEX``: the inverse of `parse_neuron_id`."""
    return f"{model}/{layer}/{index}"


def neuron_stem(model: str, layer: str, unit: int | str) -> str:
    """A file-name-safe name of a neuron, ``MODEL__LAYER__UNIT``: the stem of its cassettes and atlas card.

    For a neuron id: ``neuron_stem(*parse_neuron_id(neuron))``; a feature's unit is ``MODEL__LAYER__KIND-NAME__UNIT``
    (`Feature.stem`: the file's name, not its folder, so a cassette does not depend on where the file lies).
    """
    base, feature = split_layer(layer)
    return f"{model}__{base}__{unit}" if feature is None else f"{model}__{base}__{feature.stem}__{unit}"


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
