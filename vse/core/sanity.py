"""NeuronEval's sanity checks of a score (Oikarinen, Yan & Weng, ICML 2025, arXiv 2506.05774), as pure functions.

A score s(a, c) compares a unit's values ``a`` with an explanation's concept vector ``c`` (in vse:
what a simulator predicts from the explanation; a perfect simulator returns ``c``). A score the
field can trust goes down when the concept is made worse in either direction:

- missing labels (`missing_labels`): c- = c * m, m ~ Bernoulli(0.5) on every item, so half the
  positives are dropped in expectation (an explanation too narrow);
- extra labels (`extra_labels`): c+ = clip(c + Bernoulli(p), 0, 1) with p = sum(c) / (n - sum(c)),
  so the positives double in expectation (an explanation too broad).

A case is a *decrease* when (s(a, c') - s(a, c)) / (max - min of the score) < -epsilon, epsilon =
0.001 (NeuronEval's ``epsilon``); a test reports the share of decreases over its cases and passes
at about 90 %. These definitions are NeuronEval's ``theoretical_sanity_check.ipynb`` (``missing_labels``,
``extra_labels``, ``run_test``; their mask is ``rand > 0.5``, their extra draw ``rand < cutoff``).

vse adds one outcome NeuronEval's metrics never meet: a protocol may be unable to score a case at
all (vse's sampled protocols redraw a pass whose true values are all equal and give up after
`vse.method.score.MAX_REDRAWS`; recall-free has nothing to correlate when every unseen item has
one value). `count_decreases` counts such a case as *unscorable*, in its own column, never as a
decrease and never dropped from the denominator.

Settings (`theoretical_concept`, `binarise_top`): in NeuronEval's theoretical setting the unit is
the concept itself (a = c, binary, the first round(f n) of n items positive, f the activation
frequency); with real units c is the unit's top k = ceil(f n) items by raw value (NeuronEval's
``_binarize_act``: every item at or above the k-th value, so ties may add a few).

Pure NumPy, no I/O; every sum goes through `vse.core.exact`. Random draws come from the
generators the caller passes (`vse.core.seeds`, stream ``sanity``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from vse.core import exact
from vse.core.scaling import as_finite_1d


class SanityTest(StrEnum):
    """NeuronEval's two tests: which way the concept is made worse."""

    MISSING = "missing-labels"  # too narrow: half the positives dropped
    EXTRA = "extra-labels"  # too broad: as many positives again, at random


#: NeuronEval's minimal normalised decrease (their ``epsilon``).
EPSILON = 0.001
#: NeuronEval's pass mark: a metric passes a test when about 90 % of its cases decrease.
PASS_SHARE = 0.9

__all__ = [
    "EPSILON",
    "PASS_SHARE",
    "SanityCount",
    "SanityTest",
    "binarise_top",
    "count_decreases",
    "extra_labels",
    "missing_labels",
    "perturb",
    "theoretical_concept",
]


def _binary(c: np.ndarray) -> np.ndarray:
    x = as_finite_1d(c, "c")
    if not np.all((x == 0) | (x == 1)):
        bad = int(np.flatnonzero((x != 0) & (x != 1))[0])
        raise ValueError(f"c must be 0/1 (a concept's labels), got {x[bad]!r} at index {bad}")
    return x


def missing_labels(c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """c * m, m_i = (u_i > 0.5), u ~ U[0, 1) one draw per item: each positive dropped with probability 1/2."""
    x = _binary(c)
    return x * (rng.random(len(x)) > 0.5)


def extra_labels(c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """clip(c + (u < p), 0, 1), p = sum(c) / (n - sum(c)): the expected number of positives doubles.

    A concept with no negative item cannot gain labels: it is returned unchanged.
    """
    x = _binary(c)
    positives = np.count_nonzero(x)  # of 0/1 labels: exact, the integer math.fsum(x) would return as a float
    if positives >= len(x):
        return x.copy()
    p = positives / (len(x) - positives)
    return np.minimum(x + (rng.random(len(x)) < p), 1.0)


#: Each test's perturbation.
PERTURB: dict[SanityTest, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    SanityTest.MISSING: missing_labels,
    SanityTest.EXTRA: extra_labels,
}


def perturb(test: SanityTest | str, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The concept of one case of `test` (missing or extra labels)."""
    return PERTURB[SanityTest(test)](c, rng)


def theoretical_concept(n: int, frequency: float) -> np.ndarray:
    """NeuronEval's theoretical unit and concept: n items, the first round(frequency x n) of them 1, the rest 0.

    Refuses a setting with no positive or no negative item (neither test means anything there).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if not 0.0 < frequency < 1.0:
        raise ValueError(f"activation frequency must be strictly between 0 and 1, got {frequency!r}")
    k = round(frequency * n)
    if not 0 < k < n:
        raise ValueError(f"activation frequency {frequency} over {n} items gives {k} positive items: n is too small")
    c = np.zeros(n)
    c[:k] = 1.0
    return c


def binarise_top(values: np.ndarray, frequency: float) -> np.ndarray:
    """1 where a value is at or above the k-th highest, k = ceil(frequency x n) (NeuronEval's ``_binarize_act``)."""
    x = as_finite_1d(values, "values")
    if not 0.0 < frequency <= 1.0:
        raise ValueError(f"frequency must be in (0, 1], got {frequency!r}")
    k = math.ceil(frequency * len(x))
    if k < 1:
        raise ValueError("binarise_top needs at least one value")
    cutoff = np.sort(x)[::-1][k - 1]
    return (x >= cutoff).astype(np.float64)


@dataclass(frozen=True)
class SanityCount:
    """One test of one scorer in one setting, over its cases.

    cases: perturbed concepts scored. decreases: cases whose normalised change is below -epsilon.
    unscorable: cases the scorer could not score (neither a decrease nor dropped). unchanged:
    scored cases whose normalised change is within +-epsilon (the score did not notice).
    mean_change: the mean normalised change over the scored cases (None when none was scored).
    """

    cases: int
    decreases: int
    unscorable: int
    unchanged: int
    mean_change: float | None

    @property
    def decrease_share(self) -> float:
        """Decreases over every case, the unscorable ones included (they are not passes)."""
        return self.decreases / self.cases

    @property
    def unscorable_share(self) -> float:
        return self.unscorable / self.cases

    @property
    def passes(self) -> bool:
        return self.decrease_share >= PASS_SHARE


def count_decreases(
    base: list[float | None],
    perturbed: list[float | None],
    *,
    span: float,
    epsilon: float = EPSILON,
) -> SanityCount:
    """Count the decreases of paired scores: case i is s(a, c) = ``base[i]`` against s(a, c'_i) = ``perturbed[i]``.

    span: the score's max - min (vse's correlation score: 200). None marks a case that could not be
    scored; either side None makes the case unscorable.
    """
    if len(base) != len(perturbed):
        raise ValueError(f"{len(base)} base scores but {len(perturbed)} perturbed ones")
    if not base:
        raise ValueError("no cases to count")
    if not span > 0:
        raise ValueError(f"span must be positive, got {span!r}")
    changes = [(p - b) / span for b, p in zip(base, perturbed, strict=True) if b is not None and p is not None]
    scored = len(changes)
    return SanityCount(
        cases=len(base),
        decreases=sum(1 for d in changes if d < -epsilon),
        unscorable=len(base) - scored,
        unchanged=sum(1 for d in changes if -epsilon <= d <= epsilon),
        mean_change=exact.mean(changes) if changes else None,
    )
