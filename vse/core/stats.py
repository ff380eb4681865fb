"""Scores for simulated activations, and the paper's "re-assess until confident" loop.

* :func:`correlation_score` is the paper's Correlation Score: 100 x Pearson r between the
  simulated and the true values. Degenerate input (fewer than 2 items, or either side
  constant) scores 0.0 rather than NaN: an explanation whose simulation predicts nothing
  varying explains nothing, and a NaN would silently poison every average it enters.
* :func:`ci_half_width` is the paper's ``CI(x) = t_{0.95, n-1} * std / sqrt(n)`` for a 90%
  interval. The paper's code used the population std (ddof=0); for the n = 3..5 runs at which
  Algorithm 1 typically stops that understates the spread (at n = 3 the interval is
  sqrt(2/3) ~ 0.82 as wide, i.e. ~18% too tight), so the default is the unbiased sample std
  (ddof=1). ``ddof=0`` reproduces the paper.
* Algorithm 1 (Sec. 3.1.2) as :class:`StopRule` + :func:`should_stop` +
  :func:`run_until_confident`: score at least ``min_runs`` times, then stop as soon as the
  half-width is strictly below ``half_width`` ("< +-5" in the text; the printed pseudocode's
  ``CI <= 5`` loop condition is inverted and is read as the text says). A hard ``max_runs``
  cap bounds the cost; hitting it without reaching the target is reported in
  ``StopResult.hit_cap``.
* :func:`accuracy`, :func:`mse`, :func:`mae` compare integer predictions directly.

All inputs are validated like vse.core.scaling: 1-D, finite, errors name the bad index. Every
sum goes through vse.core.exact, so a score has the same bits on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from vse.core import exact
from vse.core.scaling import as_finite_1d
from vse.core.tquantile import t_quantile

__all__ = [
    "StopResult",
    "StopRule",
    "accuracy",
    "ci_half_width",
    "correlation_score",
    "mae",
    "mse",
    "run_until_confident",
    "should_stop",
    "summarize",
]


def _pair(predicted: ArrayLike, true: ArrayLike, *, allow_empty: bool) -> tuple[np.ndarray, np.ndarray]:
    p = as_finite_1d(predicted, "predicted")
    t = as_finite_1d(true, "true")
    if p.size != t.size:
        raise ValueError(f"predicted has {p.size} items but true has {t.size}")
    if not allow_empty and p.size == 0:
        raise ValueError("predicted and true are empty")
    return p, t


def correlation_score(predicted: ArrayLike, true: ArrayLike) -> float:
    """100 x Pearson correlation of ``predicted`` and ``true``, in [-100, 100].

    Returns 0.0 if there are fewer than 2 items or either side is constant. Raises
    ValueError if the lengths differ or any value is NaN/inf (naming the index).
    """
    p, t = _pair(predicted, true, allow_empty=True)
    r = exact.pearson(p, t)
    if r is None:
        return 0.0
    # |r| can exceed 1 by an ulp through rounding; keep the documented range.
    return min(100.0, max(-100.0, 100.0 * r))


def ci_half_width(scores: ArrayLike, confidence: float = 0.90, *, ddof: int = 1) -> float:
    """Half-width of the two-sided ``confidence`` t-interval of the mean of ``scores``:
    ``t_{(1+confidence)/2, n-1} * s / sqrt(n)``, ``s`` the std with ``ddof`` (1: sample std,
    the default; 0: the paper's population std). Returns ``math.inf`` for n < 2 (no spread
    can be estimated) and exactly 0.0 when all scores are equal.
    """
    x = as_finite_1d(scores, "scores")
    _check_confidence(confidence)
    _check_ddof(ddof)
    return _half_width(x.tolist(), confidence, ddof)


def _half_width(x: list[float], confidence: float, ddof: int) -> float:
    """`ci_half_width` of finite floats, its arguments already checked (Algorithm 1 asks after every pass)."""
    n = len(x)
    if n < 2:
        return math.inf
    # Centring on the first score makes identical scores give exactly 0 and improves precision
    # for large, close scores; std is shift-invariant.
    first = x[0]
    s = exact.std([v - first for v in x], ddof=ddof)
    t = t_quantile((1.0 + confidence) / 2.0, n - 1)
    return t * s / math.sqrt(n)


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float, np.floating)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _check_ddof(ddof: int) -> None:
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof!r}")


@dataclass(frozen=True)
class StopRule:
    """When to stop re-assessing an explanation (paper Algorithm 1)."""

    min_runs: int = 3
    """Never stop before this many scores (the paper's minimum; >= 2 so a spread exists)."""
    half_width: float = 5.0
    """Stop once the CI half-width is strictly below this (in score points, i.e. +-5)."""
    confidence: float = 0.90
    """Confidence level of the interval."""
    max_runs: int = 20
    """Hard cap on the number of scores; hitting it is reported in StopResult.hit_cap."""
    ddof: int = 1
    """Std estimator for the CI: 1 = sample std (default), 0 = the paper's population std."""

    def __post_init__(self) -> None:
        for name in ("min_runs", "max_runs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"StopRule.{name} must be an integer, got {v!r}")
        if self.min_runs < 2:
            raise ValueError(f"StopRule.min_runs must be >= 2, got {self.min_runs}")
        if self.max_runs < self.min_runs:
            raise ValueError(f"StopRule.max_runs ({self.max_runs}) must be >= min_runs ({self.min_runs})")
        hw = self.half_width
        if isinstance(hw, bool) or not isinstance(hw, (int, float, np.number)) or not (0 < hw < math.inf):
            raise ValueError(f"StopRule.half_width must be a positive number, got {hw!r}")
        try:
            _check_confidence(self.confidence)
            _check_ddof(self.ddof)
        except ValueError as exc:
            raise ValueError(f"StopRule.{exc}") from None


@dataclass
class StopResult:
    """The outcome of re-assessing one explanation."""

    scores: list[float]
    """Every score, in the order they were produced."""
    mean: float
    """Mean of ``scores`` (the explanation's reported score)."""
    half_width: float
    """CI half-width of ``mean`` under the rule's confidence and ddof (inf for < 2 scores)."""
    runs: int
    """len(scores)."""
    hit_cap: bool
    """True iff ``runs`` reached ``max_runs`` and the half-width target was still not met."""


def should_stop(scores: ArrayLike, rule: StopRule) -> bool:
    """Algorithm 1's decision: False before ``min_runs`` scores, True from ``max_runs`` on,
    otherwise whether the CI half-width is strictly below ``rule.half_width``."""
    return _stop(as_finite_1d(scores, "scores").tolist(), rule)


def _stop(scores: list[float], rule: StopRule) -> bool:
    """`should_stop` for the finite floats `run_until_confident` has collected (the rule checked when made)."""
    n = len(scores)
    if n < rule.min_runs:
        return False
    if n >= rule.max_runs:
        return True
    return _half_width(scores, rule.confidence, rule.ddof) < rule.half_width


def summarize(scores: ArrayLike, rule: StopRule) -> StopResult:
    """Build the :class:`StopResult` for recorded ``scores`` (e.g. when resuming a run).

    Raises ValueError for an empty list (there is no mean to report).
    """
    x = as_finite_1d(scores, "scores")
    if x.size == 0:
        raise ValueError("scores is empty: nothing to summarize")
    hw = ci_half_width(x, rule.confidence, ddof=rule.ddof)
    return StopResult(
        scores=[float(v) for v in x],
        mean=exact.mean(x),
        half_width=hw,
        runs=int(x.size),
        hit_cap=bool(x.size >= rule.max_runs and not hw < rule.half_width),
    )


def run_until_confident(score_once: Callable[[int], float], rule: StopRule) -> StopResult:
    """Call ``score_once(i)`` for i = 0, 1, 2, ... until :func:`should_stop` says so.

    A non-finite score raises ValueError naming the repetition (it would make the interval
    meaningless).
    """
    scores: list[float] = []
    while not _stop(scores, rule):
        i = len(scores)
        s = float(score_once(i))
        if not math.isfinite(s):
            raise ValueError(f"score_once({i}) returned {s}")
        scores.append(s)
    return summarize(scores, rule)


def accuracy(predicted: ArrayLike, true: ArrayLike) -> float:
    """Fraction of exact matches, in [0, 1] (the paper reports it as a percentage)."""
    p, t = _pair(predicted, true, allow_empty=False)
    return exact.mean(p == t)


def mse(predicted: ArrayLike, true: ArrayLike) -> float:
    """Mean squared error."""
    p, t = _pair(predicted, true, allow_empty=False)
    return exact.mean((p - t) ** 2)


def mae(predicted: ArrayLike, true: ArrayLike) -> float:
    """Mean absolute error."""
    p, t = _pair(predicted, true, allow_empty=False)
    return exact.mean(np.abs(p - t))
