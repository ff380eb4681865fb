"""Matched vs mismatched for any scorer, on a user's own units: does the score pick each unit's own explanation?

The recommended path as a user runs it: each unit gets N candidate explanations, the best of them is
chosen on held-in items and scored on the held-out rest (`vse.method.best_of`), and then every unit's
chosen explanation is also scored on every other unit's held-out items. A score that means something
puts each unit's own explanation on top: the comparison reports the matched and mismatched means,
the units whose own explanation beats the mean of the others, how often it ranks first, its mean
rank, and one-sided paired p-values (`vse.core.discrimination.compare`).

Any simulator and protocol `ScoreConfig` allows: the embedding simulator costs no LLM call beyond the
explanations; an LLM simulator costs K x K scorings of K units (recall-free: one exact pass each over
a unit's held-out items).

A unit whose items leave the protocol nothing to correlate (`vse.method.score.Unscorable`: e.g. every item its
explainer did not see has one value) is left out of the paired test; the result says how many, and why.

Several validations of the same units and method (one per target: `run_fair_validations`) share one set of
explanations: each unit is explained once and its candidates are scored on every target, so each
explanation request is sent once (a cassette holds it once).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from vse.core.discrimination import Comparison, MetaAUPRC, compare, markdown, meta_auprc, nearest_others
from vse.core.target import neuron_id, parse_neuron_id
from vse.data.loader import FIXTURES, Source
from vse.errors import UserError
from vse.method.best_of import BestOfN, best_of_n
from vse.method.explain import ExplainConfig
from vse.method.llm import LLM
from vse.method.pipeline import explain_neuron, score_explanation
from vse.method.records import ExplanationRecord
from vse.method.score import ScoreConfig, Unscorable

__all__ = ["Explained", "FairValidation", "FairValidationResult", "run_fair_validation", "run_fair_validations"]

#: Explanations already made, by (neuron, method, n, explain config, seed, source): what every target reuses.
Explained = MutableMapping[tuple, list[ExplanationRecord]]


@dataclass(frozen=True)
class FairValidation:
    """Which units, how they are explained (``n`` candidates each) and how they are scored."""

    model: str
    layer: str
    units: tuple[int, ...]
    method: str
    target: str
    n: int = 1
    score: ScoreConfig = field(default_factory=ScoreConfig)
    explain: ExplainConfig | None = None
    split_seed: int = 0
    seed: int = 0


@dataclass
class FairValidationResult:
    validation: FairValidation
    best: list[BestOfN]  # per unit, in the order of `units`
    scores: np.ndarray  # S[i, j]: unit i's chosen explanation on unit j's held-out items
    row: Comparison
    meta: MetaAUPRC | None = None  # NeuronEval's Meta-AUPRC of `scores` (`vse.core.discrimination.meta_auprc`)
    #: (unit, reason) of each unit the protocol cannot score (`Unscorable`): not in `best`, `scores` or the test
    left_out: tuple[tuple[int, str], ...] = ()

    @property
    def units(self) -> list[int]:
        """The units in the test (`best`'s and `scores`' order): the validation's, less those left out."""
        return [parse_neuron_id(b.record.neuron)[2] for b in self.best]

    @property
    def table(self) -> str:
        return markdown([self.row])

    def to_json(self) -> dict:
        return {
            "comparison": self.row.to_json(),
            "meta_auprc": None if self.meta is None else self.meta.to_json(),
            "units": self.units,
            "scores": [[round(float(s), 4) for s in row] for row in self.scores],
            "best_of": [b.to_json() for b in self.best],
        } | ({"left_out": [{"unit": u, "reason": r} for u, r in self.left_out]} if self.left_out else {})

    def left_out_line(self) -> str | None:
        """How many units were left out of the paired test, and why; None when none was."""
        if not self.left_out:
            return None
        which = "; ".join(f"unit {u}: {r}" for u, r in self.left_out)
        return f"{self.row.method} on {self.row.target}: {len(self.left_out)} unscorable unit(s) left out ({which})"


def explained_once(
    v: FairValidation, neuron: str, llm: LLM, source: Source, explained: Explained
) -> list[ExplanationRecord]:
    """The unit's ``v.n`` explanations: made on first use, then read from ``explained`` by every other target."""
    key = (neuron, str(v.method), v.n, v.explain, v.seed, source)
    if key not in explained:
        explained[key] = explain_neuron(
            neuron, v.method, llm=llm, n=v.n, config=v.explain, seed=v.seed, progress=False, source=source
        )
    return explained[key]


def run_fair_validations(
    validations: Sequence[FairValidation], llm: LLM, *, progress: bool = True, source: Source = FIXTURES
) -> list[FairValidationResult]:
    """`run_fair_validation` for each of ``validations`` (e.g. one per method and target) on one LLM, each
    unit explained once per method and its explanations scored on every target."""
    explained: Explained = {}
    return [run_fair_validation(v, llm, progress=progress, source=source, explained=explained) for v in validations]


def run_fair_validation(
    v: FairValidation,
    llm: LLM,
    *,
    progress: bool = True,
    source: Source = FIXTURES,
    explained: Explained | None = None,
) -> FairValidationResult:
    """Explain, choose fairly, cross-score and compare (see the module doc). explained: explanations other
    validations made (`run_fair_validations`), reused, and this one's added."""
    neurons = [neuron_id(v.model, v.layer, u) for u in v.units]
    explained = {} if explained is None else explained
    best: list[BestOfN] = []
    left_out: list[tuple[int, str]] = []
    for neuron in tqdm(neurons, desc="explain and choose", unit="unit", disable=not progress):
        records = explained_once(v, neuron, llm, source, explained)
        try:
            best.append(
                best_of_n(
                    records,
                    v.target,
                    llm=llm,
                    config=v.score,
                    split_seed=v.split_seed,
                    seed=v.seed,
                    progress=False,
                    source=source,
                )
            )
        except Unscorable as exc:  # its items leave nothing to correlate: out of the paired test, said why
            left_out.append((parse_neuron_id(neuron)[2], exc.reason))
    neurons = [b.record.neuron for b in best]
    if len(neurons) < 3:
        raise UserError(
            f"{v.target}: only {len(neurons)} of the {len(v.units)} units can be scored ({len(left_out)} unscorable, "
            f"e.g. unit {left_out[0][0]}: {left_out[0][1]}); the paired test needs at least 3: choose other units"
        )
    k = len(neurons)
    scores = np.zeros((k, k))
    for j, neuron in enumerate(tqdm(neurons, desc="cross-score", unit="unit", disable=not progress)):
        held_out = best[j].held_out  # unit j's items that no candidate was shown or chosen on
        for i in range(k):
            if i == j:
                scores[i, j] = best[j].record.mean
                continue
            scores[i, j] = score_explanation(
                neuron,
                best[i].record.explanation,
                v.target,
                llm=llm,
                config=v.score,
                polarity=best[i].record.polarity,
                method=best[i].record.method,
                seed=v.seed,
                progress=False,
                source=source,
                universe=held_out,
            ).mean
    row = compare(scores, protocol=v.score.label, target=v.target, method=f"{v.method} (best of {v.n})")
    meta = meta_of(scores, [b.record.explanation for b in best], llm)
    return FairValidationResult(v, best, scores, row, meta, tuple(left_out))


def meta_of(scores: np.ndarray, explanations: list[str], llm: LLM) -> MetaAUPRC | None:
    """Meta-AUPRC of the cross-scores; hard negatives (each unit's nearest other explanation) when the LLM has
    an embedding store (the embedding simulator's: it holds the explanations' vectors already). None when a
    unit's own explanation has no score."""
    if not all(np.isfinite(scores[j, j]) for j in range(len(scores))):
        return None
    nearest = None
    if llm.embeddings is not None:
        nearest = nearest_others(llm.embeddings.embed(explanations))
    return meta_auprc(scores, nearest)
