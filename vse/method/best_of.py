"""Fair best of N: choose among candidate explanations on some items, report on others.

The paper keeps the best of N explanations by their scores, and reporting the winner's score on the
very items it was chosen on inflates it: the maximum of N noisy scores is biased upward (measured on
16 private `_conv_head` units: best of 6 chosen on the reported items separated own from other
explanations with p = 1.2e-6, the same chosen on other items p = 0.0026). So the items the explainer
was not shown are split once, by a seeded draw, into a held-in half and a held-out half: every
candidate is scored on the held-in half, the best of them is chosen there, and its score on the
held-out half is what is reported. Every candidate's held-in score is kept beside the report.

Which items the explainer saw comes from its records (`ExplanationRecord.shown`, when the target is
the kind of pairs it was shown); older records without it fall back to the protocol's rule (the top
``n_shown`` by raw value). With one candidate there is nothing to choose: it is scored on every
unseen item (``uniform``: drawn from every item, as the paper does).

The split: ``vse.core.seeds.rng(split_seed, "held-in", unit)`` permutes the unseen items and the
first half (rounded down) is held in. Protocols: ``recall-free`` and ``all`` score a half in one
exact pass; ``uniform`` runs Algorithm 1 with passes drawn within it.

Before any call, `universes` checks every set of items a score will use: too few unseen items to split,
or a set of one value only (a sparse unit on a small probe set: every unseen item is 0), raises
`vse.method.score.Unscorable`, which says so in words and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vse.core import exact, seeds
from vse.core.protocols import outside, ranks
from vse.core.target import Target, parse_neuron_id
from vse.core.vocab import EXACT_PROTOCOLS, Pick, Unscorability
from vse.data.loader import FIXTURES, Source, load_target
from vse.method import defaults
from vse.method.explain import ExplainConfig
from vse.method.llm import LLM
from vse.method.pipeline import explain_neuron, score_explanation
from vse.method.records import ExplanationRecord, ScoreRecord
from vse.method.score import ScoreConfig, Unscorable, check_scorable, one_value, unseen_cause

__all__ = [
    "BestOfN",
    "Candidate",
    "Universes",
    "best_of_n",
    "centred_rows",
    "choose",
    "explain_best",
    "nearest_units",
    "specificity",
    "split_unseen",
    "universes",
    "unseen_items",
]


@dataclass(frozen=True)
class Candidate:
    """One candidate explanation and its score on the held-in items (None when it was the only one)."""

    explanation: str
    seed: int | None
    held_in: float | None

    def to_json(self) -> dict[str, Any]:
        return {"explanation": self.explanation, "seed": self.seed, "held_in": self.held_in}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(str(data["explanation"]), data.get("seed"), data.get("held_in"))


@dataclass
class BestOfN:
    """The chosen candidate's score on the held-out items, and how it was chosen."""

    record: ScoreRecord
    candidates: list[Candidate]
    chosen: int
    split_seed: int
    held_in_items: int
    held_out_items: int
    #: the items the report may use (the held-out half; every unseen item for one candidate), ascending
    held_out: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int), repr=False)

    def lines(self) -> str:
        """How the CLI prints it: every candidate's held-in score, then the chosen one's report."""
        r = self.record
        if len(self.candidates) == 1:
            return f"{r.line()}  [{r.method}] {r.explanation}  (every unseen item: {self.held_out_items})"
        out = [f"held-in scores ({self.held_in_items} items, split seed {self.split_seed}):"]
        for i, c in enumerate(self.candidates):
            mark = "  <- chosen" if i == self.chosen else ""
            out.append(f"  {c.held_in:7.2f}  {c.explanation}{mark}")
        out.append(
            f"best of {len(self.candidates)} on the {self.held_out_items} held-out items: "
            f"{r.line()}  [{r.method}] {r.explanation}"
        )
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.record.to_json(),
            "best_of": {
                "n": len(self.candidates),
                "chosen": self.chosen,
                "split_seed": self.split_seed,
                "held_in_items": self.held_in_items,
                "held_out_items": self.held_out_items,
                "candidates": [c.to_json() for c in self.candidates],
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BestOfN:
        """What `to_json` wrote (the held-out item indices are not written: empty). A plain `ScoreRecord`'s
        JSON (written before best of N was fair) reads as its explanation alone."""
        record = ScoreRecord.from_json(data)
        how = data.get("best_of")
        if how is None:
            return cls(record, [Candidate(record.explanation, record.explanation_seed, None)], 0, 0, 0, 0)
        return cls(
            record,
            [Candidate.from_json(c) for c in how["candidates"]],
            int(how["chosen"]),
            int(how["split_seed"]),
            int(how["held_in_items"]),
            int(how["held_out_items"]),
        )


#: The fewest unseen items best of N splits: a correlation needs at least 2 items in each half, and a half of
#: fewer than 5 says next to nothing.
MIN_UNSEEN = 10


def unseen_items(
    values_strength: np.ndarray, records: Sequence[ExplanationRecord], target: str, n_shown: int
) -> np.ndarray:
    """The items of ``target`` none of the records' explainer was shown, ascending.

    records whose method is the target's kind say what they showed (`ExplanationRecord.shown`); those
    without it are taken to have seen the ``n_shown`` strongest (the ``recall-free`` rule); a record
    of another kind saw none of these items.
    """
    size = len(values_strength)
    shown: set[int] = set()
    for r in records:
        if str(r.method) != str(target):
            continue
        shown |= set(r.shown) if r.shown else set(ranks(values_strength)[:n_shown].tolist())
    return outside(size, shown)


def split_unseen(unseen: np.ndarray, split_seed: int, unit: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-in, held-out), each ascending: a seeded half of ``unseen`` and the rest."""
    perm = seeds.rng(split_seed, "held-in", unit).permutation(np.asarray(unseen, dtype=int))
    half = len(perm) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


#: What to do when the unseen items of several candidates cannot score (one explanation may use the shown ones).
SEVERAL_UNSEEN = (
    "give a larger probe set, or score one explanation with --protocol uniform, which includes the shown items"
)


@dataclass(frozen=True)
class Universes:
    """The items best of N scores on: ``unseen`` (what no candidate's explainer was shown), and with several
    candidates its ``held_in`` and ``held_out`` halves (None with one)."""

    unseen: np.ndarray
    held_in: np.ndarray | None = None
    held_out: np.ndarray | None = None


def universes(
    records: Sequence[ExplanationRecord], scored: Target, target: str, config: ScoreConfig, split_seed: int = 0
) -> Universes:
    """The items `best_of_n` will score ``records`` on, checked before any call: raises `Unscorable` (in words,
    with what to do) when there are too few of them, or a set a score must use has one value only."""
    unseen = unseen_items(scored.strength, records, target, config.n_shown)
    size, neuron = len(scored.values), scored.neuron
    if len(records) == 1:
        if config.protocol in EXACT_PROTOCOLS:
            cause = unseen_cause(len(unseen), size, scored.values[unseen])
            if cause is not None:
                raise Unscorable(neuron, Unscorability.UNSEEN, cause)
        else:  # the paper's uniform protocol draws from every item
            check_scorable(scored, config)
        return Universes(unseen)
    cause = unseen_cause(len(unseen), size, scored.values[unseen])
    if cause is not None:
        raise Unscorable(neuron, Unscorability.UNSEEN, cause, SEVERAL_UNSEEN)
    if len(unseen) < MIN_UNSEEN:
        raise Unscorable(
            neuron,
            Unscorability.SPLIT,
            f"best of {len(records)} chooses on items the explainer was not shown, and only {len(unseen)} of the "
            f"{size} items were not shown: too few to split into held-in and held-out halves (at least {MIN_UNSEEN})",
        )
    held_in, held_out = split_unseen(unseen, split_seed, parse_neuron_id(neuron)[2])
    for name, half in (("held-in", held_in), ("held-out", held_out)):
        values = scored.values[half]
        if len(np.unique(values)) == 1:
            raise Unscorable(
                neuron,
                Unscorability.SPLIT,
                f"all {len(half)} {name} items (a seeded half of the {len(unseen)} the explainer did not see) "
                f"have the same value {one_value(values)}",
            )
    return Universes(unseen, held_in, held_out)


def centred_rows(values: np.ndarray) -> np.ndarray:
    """Each row of ``values`` [units, items] minus its exact mean, over its exact length (a constant row: zeros),
    so that `exact.dots` of two rows is their Pearson r."""
    out = []
    for row in np.asarray(values, dtype=np.float64):
        c = row - exact.mean(row)
        n = exact.norm(c)
        out.append(c / n if n > 0 else np.zeros_like(c))
    return np.array(out, dtype=np.float64)


def nearest_units(rows: np.ndarray, unit: int, k: int) -> list[int]:
    """The ``k`` other units whose values correlate most with ``unit``'s (rows from `centred_rows`), ties by
    the lower index: the neighbours `Pick.SPECIFIC` contrasts a candidate with."""
    if not 0 <= unit < len(rows):
        raise ValueError(f"unit {unit} is not one of the {len(rows)} rows")
    r = exact.dots(rows, rows[unit]).tolist()
    order = sorted((u for u in range(len(rows)) if u != unit), key=lambda u: (-r[u], u))
    return order[:k]


def specificity(own: Sequence[float], on_neighbours: Sequence[Sequence[float]]) -> list[float]:
    """Per candidate: its held-in score on the unit's values minus the mean of its scores on the neighbours'
    values over the same items (``on_neighbours[c]``: candidate c's score on each neighbour)."""
    if len(own) != len(on_neighbours):
        raise ValueError(f"{len(own)} candidates' own scores but {len(on_neighbours)} rows of neighbour scores")
    return [o - exact.mean(n) if len(n) else o for o, n in zip(own, on_neighbours, strict=True)]


def choose(own: Sequence[float], pick: Pick = Pick.HELD_IN, on_neighbours: Sequence[Sequence[float]] = ()) -> int:
    """The chosen candidate's index: the best by ``pick`` (the first of equal bests)."""
    if not own:
        raise ValueError("nothing to choose from: no candidate scores")
    if pick == Pick.HELD_IN:
        key = list(own)
    elif pick == Pick.SPECIFIC:
        key = specificity(own, on_neighbours)
    else:
        raise ValueError(f"pick {pick!r} is not one of {[p.value for p in Pick]}")
    return max(range(len(key)), key=lambda c: (key[c], -c))


def best_of_n(
    records: Sequence[ExplanationRecord],
    target: str,
    *,
    llm: LLM,
    config: ScoreConfig | None = None,
    split_seed: int = 0,
    seed: int = 0,
    progress: bool = True,
    source: Source = FIXTURES,
    score_fn: Callable[..., ScoreRecord] = score_explanation,
) -> BestOfN:
    """Choose the best of ``records`` (explanations of one neuron) on held-in items, score it on held-out ones.

    score_fn: how one explanation is scored (`vse.method.pipeline.score_explanation`, which callers that
    stand in for the pipeline replace)."""
    if not records:
        raise ValueError("best of N needs at least one explanation")
    neuron = records[0].neuron
    if any(r.neuron != neuron for r in records):
        raise ValueError(f"best of N compares explanations of one neuron; got {sorted({r.neuron for r in records})}")
    config = config or ScoreConfig(api=llm.api)
    polarity = records[0].polarity
    scored = load_target(neuron, target, polarity, source=source)
    items = universes(records, scored, target, config, split_seed)  # raises Unscorable before any call
    unseen = items.unseen

    def score(r: ExplanationRecord, universe: np.ndarray | None) -> ScoreRecord:
        return score_fn(
            neuron,
            r.explanation,
            target,
            llm=llm,
            config=config,
            polarity=polarity,
            method=r.method,
            explanation_seed=r.seed,
            seed=seed,
            progress=progress,
            source=source,
            universe=universe,
        )

    if len(records) == 1:
        only = records[0]
        first = [Candidate(only.explanation, only.seed, None)]
        # Nothing to choose: recall-free and all score every unseen item; the paper's uniform protocol
        # keeps drawing from every item, as the paper does.
        universe = unseen if config.protocol in EXACT_PROTOCOLS else None
        return BestOfN(score(only, universe), first, 0, split_seed, 0, len(unseen), unseen)
    held_in, held_out = items.held_in, items.held_out  # several candidates: `universes` split them
    held_in_scores = [score(r, held_in).mean for r in records]
    chosen = int(np.argmax(held_in_scores))  # the first of equal bests
    candidates = [Candidate(r.explanation, r.seed, s) for r, s in zip(records, held_in_scores, strict=True)]
    return BestOfN(
        score(records[chosen], held_out), candidates, chosen, split_seed, len(held_in), len(held_out), held_out
    )


def explain_best(
    neuron: str,
    method: str,
    *,
    llm: LLM,
    target: str | None = None,
    n: int = defaults.N_EXPLANATIONS,
    polarity: str = defaults.POLARITY,
    explain: ExplainConfig | None = None,
    config: ScoreConfig | None = None,
    split_seed: int = 0,
    seed: int = 0,
    progress: bool = True,
    source: Source = FIXTURES,
) -> BestOfN:
    """The recommended path in one call: ``n`` candidate explanations (`explain_neuron`), the best chosen on
    held-in items and reported on held-out ones (`best_of_n`). target: the kind scored (default: the method's
    own pairs). config: the scorer (default `ScoreConfig()`: the embedding simulator, which needs
    ``llm.embeddings``)."""
    records = explain_neuron(
        neuron, method, llm=llm, n=n, polarity=polarity, config=explain, seed=seed, progress=progress, source=source
    )
    return best_of_n(
        records,
        target or method,
        llm=llm,
        config=config,
        split_seed=split_seed,
        seed=seed,
        progress=progress,
        source=source,
    )
