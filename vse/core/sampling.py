"""Pick which (caption/label, value) pairs to show the LLM: the paper's subset strategies.

A 4K context window forces the paper to show a subset of the pairs. Appendix B.1.1/B.2.1
compare strategies for the few-shot examples (Baseline random, Random x/y, Highest x/y) and
B.1.2 for explanation generation (Random, Random highlight non-zero, Top). They are all
implemented here as pure functions ``(values, n, rng) -> indices`` into ``values``.

Conventions (shared by every strategy):

* ``values`` is a 1-D array of finite numbers, usually the already-scaled integers.
  "Non-zero" means ``value != 0``, "zero" means ``value == 0``.
* The result is an int64 array of distinct indices of length ``min(n, len(values))``;
  ``n < 0`` raises ValueError. ``n >= len(values)`` returns every index.
* Randomness comes only from the explicit ``numpy.random.Generator``; the same seed gives
  the same indices.
* Order: :func:`top` returns ascending value, highest last (as the paper lists pairs);
  ties are broken by index, and when the cut falls inside a tie the lower indices win.
  The random strategies return their indices in shuffled order, because the order the LLM
  sees must not leak the values (e.g. zeros first, then the non-zero ones).
* Counts: ``round(n * fraction)`` uses round-half-up (``floor(x + 0.5)``), like the scaling,
  so 75/25 of 50 is 38 non-zero + 12 zero. (It is computed from ``min(n, len(values))``,
  which only differs from ``n`` when every index is returned anyway.)

Shortfall rule (when one kind runs out): take every item of the scarce kind and fill the
remaining slots from the other kind, so the length is always ``min(n, len(values))``.
For ``random_ratio`` both the taken and the filling items are uniform random picks of their
kind. For ``highest_ratio`` the non-zero part is always "the m highest non-zero items" for
some m: if zeros run out, the extra slots go to the next-highest non-zero items (continuing
down the ranking, never random), so the strategy keeps its meaning of showing the top of the
range.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from vse.core.scaling import as_finite_1d
from vse.core.vocab import FewshotStrategy

Strategy = Callable[[ArrayLike, int, np.random.Generator], np.ndarray]

__all__ = [
    "STRATEGIES",
    "Strategy",
    "get_strategy",
    "highest_ratio",
    "random",
    "random_highlight_nonzero",
    "random_ratio",
    "top",
]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(n)


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def _check_fraction(fraction: float, name: str) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number in [0, 1], got {fraction!r}") from exc
    if not 0.0 <= f <= 1.0:  # also rejects nan
        raise ValueError(f"{name} must be in [0, 1], got {fraction!r}")
    return f


def _ascending(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` sorted by (value, index) ascending."""
    idx = np.asarray(idx, dtype=np.int64)
    return idx[np.lexsort((idx, values[idx]))]


def _highest_first(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` ranked by value descending, ties by index ascending (lower index wins a cut)."""
    idx = np.asarray(idx, dtype=np.int64)
    return idx[np.lexsort((idx, -values[idx]))]


def _choose(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct items of ``pool``, uniformly at random, in random order."""
    return pool[rng.permutation(pool.size)[:k]]


def top(values: ArrayLike, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The ``n`` highest values, returned in ascending order of value (highest last).

    Ties are ordered by index, and when ``n`` cuts through a tie the lower indices are kept.
    ``rng`` is accepted (and ignored) so ``top`` has the common strategy signature.
    """
    arr = as_finite_1d(values)
    k = min(_check_n(n), arr.size)
    chosen = _highest_first(arr, np.arange(arr.size))[:k]
    return _ascending(arr, chosen)


def random(values: ArrayLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices uniformly at random without replacement (the paper's Baseline),
    in random order."""
    arr = as_finite_1d(values)
    k = min(_check_n(n), arr.size)
    return _choose(_check_rng(rng), np.arange(arr.size, dtype=np.int64), k)


def random_highlight_nonzero(values: ArrayLike, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bills et al.'s "random, highlight non-zero" (paper App. B.1.2). Returns a pair:

    * ``shown``: a uniform random subset, as :func:`random` (same rng draws, so the same seed
      gives the same subset as ``random``);
    * ``highlight``: the non-zero members of ``shown``, in ascending order of value (ties by
      index), for the list of non-zero pairs printed below the main list.
    """
    shown = random(values, n, rng)
    arr = as_finite_1d(values)
    highlight = _ascending(arr, shown[arr[shown] != 0])
    return shown, highlight


def _split_counts(k: int, want_nonzero: int, n_nonzero: int, n_zero: int) -> tuple[int, int]:
    """How many non-zero and zero items to take, applying the shortfall rule."""
    take_nonzero = min(want_nonzero, n_nonzero)
    take_zero = min(k - take_nonzero, n_zero)
    # If zeros ran short, top up with more non-zero items; k <= n_nonzero + n_zero keeps
    # this within what is available.
    take_nonzero = k - take_zero
    return take_nonzero, take_zero


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def random_ratio(values: ArrayLike, n: int, rng: np.random.Generator, nonzero_fraction: float) -> np.ndarray:
    """``round(n * nonzero_fraction)`` random non-zero items plus random zero items for the
    rest, shuffled together (paper's "Random x/y"). See the module docstring for shortfalls."""
    arr = as_finite_1d(values)
    k = min(_check_n(n), arr.size)
    rng = _check_rng(rng)
    f = _check_fraction(nonzero_fraction, "nonzero_fraction")
    nonzero = np.flatnonzero(arr != 0)
    zero = np.flatnonzero(arr == 0)
    n_nz, n_z = _split_counts(k, _round_half_up(k * f), nonzero.size, zero.size)
    picked = np.concatenate([_choose(rng, nonzero, n_nz), _choose(rng, zero, n_z)])
    return rng.permutation(picked).astype(np.int64)


def highest_ratio(values: ArrayLike, n: int, rng: np.random.Generator, top_fraction: float) -> np.ndarray:
    """The ``round(n * top_fraction)`` highest non-zero items plus random zero items for the
    rest, shuffled together (paper's "Highest x/y"). See the module docstring for shortfalls.

    "Highest" is by value (ties: lower index first), so with signed values the most negative
    items rank last among the non-zero ones.
    """
    arr = as_finite_1d(values)
    k = min(_check_n(n), arr.size)
    rng = _check_rng(rng)
    f = _check_fraction(top_fraction, "top_fraction")
    nonzero = _highest_first(arr, np.flatnonzero(arr != 0))
    zero = np.flatnonzero(arr == 0)
    n_nz, n_z = _split_counts(k, _round_half_up(k * f), nonzero.size, zero.size)
    picked = np.concatenate([nonzero[:n_nz], _choose(rng, zero, n_z)])
    return rng.permutation(picked).astype(np.int64)


# The named strategies of App. B.1.1/B.2.1 ("x/y" = x% non-zero, y% zero). "random-highlight"
# is not here because it returns a pair; call random_highlight_nonzero directly.
STRATEGIES: dict[str, Strategy] = {
    FewshotStrategy.TOP: top,
    FewshotStrategy.RANDOM: random,
    FewshotStrategy.RANDOM_50_50: functools.partial(random_ratio, nonzero_fraction=0.5),
    FewshotStrategy.RANDOM_75_25: functools.partial(random_ratio, nonzero_fraction=0.75),
    FewshotStrategy.RANDOM_90_10: functools.partial(random_ratio, nonzero_fraction=0.9),
    FewshotStrategy.HIGHEST_50_50: functools.partial(highest_ratio, top_fraction=0.5),
    FewshotStrategy.HIGHEST_75_25: functools.partial(highest_ratio, top_fraction=0.75),
    FewshotStrategy.HIGHEST_90_10: functools.partial(highest_ratio, top_fraction=0.9),
}


def get_strategy(name: str) -> Strategy:
    """Look up a strategy in :data:`STRATEGIES`; an unknown name raises ValueError listing
    the valid ones."""
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown sampling strategy {name!r}; valid names: {valid}") from None
