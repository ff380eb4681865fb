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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from vse.core.discrimination import Comparison, compare, markdown
from vse.core.target import neuron_id
from vse.data.loader import FIXTURES, Source
from vse.method.best_of import BestOfN, best_of_n
from vse.method.explain import ExplainConfig
from vse.method.llm import LLM
from vse.method.pipeline import explain_neuron, score_explanation
from vse.method.score import ScoreConfig

__all__ = ["FairValidation", "FairValidationResult", "run_fair_validation"]


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

    @property
    def table(self) -> str:
        return markdown([self.row])

    def to_json(self) -> dict:
        return {
            "comparison": self.row.to_json(),
            "units": list(self.validation.units),
            "scores": [[round(float(s), 4) for s in row] for row in self.scores],
            "best_of": [b.to_json() for b in self.best],
        }


def run_fair_validation(
    v: FairValidation, llm: LLM, *, progress: bool = True, source: Source = FIXTURES
) -> FairValidationResult:
    """Explain, choose fairly, cross-score and compare (see the module doc)."""
    neurons = [neuron_id(v.model, v.layer, u) for u in v.units]
    best: list[BestOfN] = []
    for neuron in tqdm(neurons, desc="explain and choose", unit="unit", disable=not progress):
        records = explain_neuron(
            neuron, v.method, llm=llm, n=v.n, config=v.explain, seed=v.seed, progress=False, source=source
        )
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
    return FairValidationResult(v, best, scores, row)
