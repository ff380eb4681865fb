"""What is known of one neuron, as data: its explanations and their scores, its probe images and the
pairs a Weight-* method read. `from_records` fills in the explanations and scores, `sources` the
images and pairs, `render` turns a card into HTML."""

from __future__ import annotations

from dataclasses import dataclass

from vse.core.target import POLARITIES, neuron_stem, parse_neuron_id
from vse.core.vocab import Polarity


@dataclass(frozen=True)
class Item:
    """One shown pair: a text (caption, class name, next-layer label), its value, and an image.

    image / full: paths relative to the site's root (thumbnail, enlarged); None for text pairs.
    """

    text: str
    value: float
    image: str | None = None
    full: str | None = None


@dataclass(frozen=True)
class SimItem:
    """One item of a scoring pass: its index in the target, its text, the true (scaled) value and
    the simulated (expected) one."""

    index: int
    true: float
    predicted: float
    text: str = ""


@dataclass(frozen=True)
class Chosen:
    """Why best of N kept an explanation: its score on the held-in items against the candidates it beat.

    held_in: its own held-in score; beaten: the other candidates' held-in scores, in their order; the
    items of each half (the score beside it is on the held-out half, which the choice never saw)."""

    held_in: float
    beaten: tuple[float, ...]
    held_in_items: int
    held_out_items: int


@dataclass(frozen=True)
class Score:
    """One explanation's score on one target under one protocol.

    mean, half_width, passes, hit_cap: Algorithm 1's outcome (None where the record has no interval).
    items: the first pass's items (true vs simulated), empty when the record keeps no passes.
    n_passes_kept: how many passes the record holds (the plot shows the first).
    simulator: the simulation mode that predicted (``Mode``; "" when the record does not say): the
        embedding simulator's predictions are cosines, not 0..10 values, and get their own axis.
    """

    target: str
    protocol: str
    mean: float | None
    half_width: float | None = None
    passes: int | None = None
    hit_cap: bool = False
    items: tuple[SimItem, ...] = ()
    n_passes_kept: int = 0
    simulator: str = ""
    chosen: Chosen | None = None  # best of N: why this explanation was the one scored (None: one candidate)

    @property
    def column(self) -> str:
        return f"{self.target} · {self.protocol}" if self.protocol else self.target


@dataclass(frozen=True)
class Explanation:
    """One explanation of a neuron and every score it got.

    cut: why the text is known to stop mid-sentence ("" when it is not): the model hit its token
        budget (``finish_reason == "length"``, recorded as ``"cut"`` by new runs, or for older
        records: one call that used all of ``max_tokens``).
    """

    method: str
    polarity: str
    text: str
    cut: str = ""
    scores: tuple[Score, ...] = ()

    def best(self) -> float | None:
        means = [s.mean for s in self.scores if s.mean is not None]
        return max(means) if means else None


@dataclass(frozen=True)
class WeightPairs:
    """The pairs a Weight-* method reads for one neuron: ``kind`` ("weight-label": classes; "weight-clip":
    next-layer units by their CLIP-Dissect labels), the highest-weighted and the lowest-weighted ones."""

    kind: str
    highest: tuple[Item, ...] = ()
    lowest: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Dead:
    """A unit `vse label` found dead: its values are constant (``reason``, e.g. "no non-zero value on the
    probe set"), so ``method`` explained nothing and nothing was scored."""

    method: str
    reason: str

    @property
    def text(self) -> str:
        return f"dead: {self.reason}"


@dataclass(frozen=True)
class Unscored:
    """A unit `vse label` explained but could not score on ``target``: the protocol had nothing to correlate
    (``reason``, in words, with what to do; e.g. every item the explainer did not see has one value)."""

    target: str
    reason: str

    @property
    def text(self) -> str:
        return f"unscorable{' on ' + self.target if self.target else ''}: {self.reason}"


@dataclass(frozen=True)
class Card:
    """Everything shown for one neuron (see the module doc). ``notes``: what could not be shown, and why;
    ``dead``: set when the unit is dead (constant values), and then it has no explanations;
    ``unscorable``: set when its explanations could not be scored (`Unscored`)."""

    neuron: str
    explanations: tuple[Explanation, ...]
    top: tuple[Item, ...] = ()
    bottom: tuple[Item, ...] = ()
    n_probe: int = 0
    weights: tuple[WeightPairs, ...] = ()
    notes: tuple[str, ...] = ()
    dead: Dead | None = None
    unscorable: Unscored | None = None

    @property
    def polarities(self) -> tuple[str, ...]:
        seen = {e.polarity for e in self.explanations} or {Polarity.POSITIVE}
        return tuple(p for p in POLARITIES if p in seen)

    @property
    def slug(self) -> str:
        return slug(self.neuron)


def slug(neuron: str) -> str:
    """A file-name-safe id of a neuron: ``model__layer__unit``."""
    return neuron_stem(*parse_neuron_id(neuron))


def neuron_key(neuron: str) -> tuple[str, str, int]:
    model, layer, unit = parse_neuron_id(neuron)
    return model, layer, unit
