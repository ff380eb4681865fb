"""Sums, means, spreads and dot products that give the same bits on every machine.

Every number vse writes under results/ is a reduction of many floats: a Pearson r, a mean score,
a half-width, a cosine. Floating-point addition is not associative, so a reduction's last bits
depend on the order its terms are added in, and that order is not ours to fix when a library
picks it: OpenBLAS chooses a kernel per CPU (and per OPENBLAS_CORETYPE, thread count, cache
size), and NumPy's reductions may be vectorised differently per SIMD level. A replay on another
machine then writes other digits (found comparing a clone on an AMD EPYC with the committed
results).

Here every sum is ``math.fsum``: the correctly rounded sum of its terms, whatever their order,
on any CPU. Products and quotients of two floats are correctly rounded by IEEE 754 on their
own, so a dot product as the fsum of elementwise products is exact up to one rounding per
product, and the same everywhere. The cost is a Python loop over the terms: microseconds for the
few hundred items of a simulation pass, far below an LLM call.

What is not covered, because no pure function can cover it: transcendental functions
(``math.exp``, ``math.log``, scipy's t quantile) come from the platform's libm, which may differ
between C libraries; see :mod:`vse.core.tquantile` for the one vse's results lean on.

Nothing here may call BLAS (``np.dot``, ``@``, ``matmul``, ``einsum``, ``linalg``) or NumPy's
own reductions; ``tests/core/test_exact.py`` checks the source for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["cosine", "dot", "dots", "fsum", "mean", "norm", "pearson", "std", "var"]


def _floats(x: ArrayLike | Iterable[float]) -> list[float]:
    """``x`` as a flat list of Python floats (``tolist`` keeps every bit of a float64)."""
    return np.asarray(x, dtype=np.float64).ravel().tolist()


def fsum(x: ArrayLike | Iterable[float]) -> float:
    """The correctly rounded sum of ``x`` (0.0 when empty)."""
    return math.fsum(_floats(x))


def mean(x: ArrayLike | Iterable[float]) -> float:
    """The correctly rounded sum divided by the count; ValueError when empty."""
    v = _floats(x)
    if not v:
        raise ValueError("mean of an empty sequence")
    return math.fsum(v) / len(v)


def var(x: ArrayLike | Iterable[float], ddof: int = 0) -> float:
    """Variance with ``ddof`` (0: population, 1: sample): fsum of squared deviations from the mean.

    Two passes (mean first) rather than the sum of squares minus the squared sum, which cancels
    catastrophically for large, close values. ValueError when there are not more than ``ddof`` values.
    """
    v = _floats(x)
    if len(v) <= ddof:
        raise ValueError(f"variance with ddof={ddof} needs more than {ddof} values, got {len(v)}")
    m = math.fsum(v) / len(v)
    return math.fsum((a - m) * (a - m) for a in v) / (len(v) - ddof)


def std(x: ArrayLike | Iterable[float], ddof: int = 0) -> float:
    """The square root of :func:`var` (``math.sqrt`` is correctly rounded by IEEE 754)."""
    return math.sqrt(var(x, ddof))


def dot(a: ArrayLike, b: ArrayLike) -> float:
    """fsum of the elementwise products of two equally long vectors."""
    x, y = _floats(a), _floats(b)
    if len(x) != len(y):
        raise ValueError(f"dot of vectors of {len(x)} and {len(y)} items")
    return math.fsum(p * q for p, q in zip(x, y, strict=True))


def dots(rows: ArrayLike, v: ArrayLike) -> np.ndarray:
    """`dot` of every row of ``rows`` [n, d] with ``v`` [d], bit for bit, at a fraction of its cost.

    The products are NumPy's elementwise ones (each correctly rounded on its own, as in `dot`; no BLAS).
    Each row's exact sum is then found without a loop over its terms (`_exact_row_sums`), and rounded
    once by ``math.fsum`` of a few exact parts: the same correctly rounded sum as ``math.fsum`` of the
    row's products. The embedding simulator's cosines: one per item, hundreds of items per explanation.
    """
    m, w = np.asarray(rows, dtype=np.float64), np.asarray(v, dtype=np.float64).ravel()
    if m.ndim != 2 or m.shape[1] != len(w):
        raise ValueError(f"dots of rows shaped {m.shape} with a vector of {len(w)} items")
    products = m * w
    return _exact_row_sums(products)


#: The largest exponent at which `_exact_row_sums` splits (1.5 * 2**e must be a normal double with room).
_MAX_SPLIT_EXPONENT = 1000
_MIN_SPLIT_EXPONENT = -1000


def _exact_row_sums(p: np.ndarray) -> np.ndarray:
    """``math.fsum`` of every row of ``p`` [n, d], the same bits, with the work done by whole-array steps.

    Rump, Ogita and Oishi's error-free split (SIAM J. Sci. Comput. 31(1), 2008, ExtractVector): with
    ``c = 1.5 * 2**E`` and every ``|x| < 2**(E - 2)``, ``q = (x + c) - c`` is ``x`` rounded to a multiple
    of ``u = 2**(E - 52)`` and ``x - q`` is exact. E is chosen so that every ``|q| / u < 2**(width - 1)``
    with ``width = 52 - bit_length(d + 1)``: a row's d parts are then integers times ``u`` whose every
    partial sum stays below ``2**53 u``, so adding them in any order is exact (here a fixed halving tree,
    one array addition per level). The rest, each ``|x - q| <= u / 2``, is split again ``width`` bits lower,
    until nothing is left (two rounds for the embedding simulator's products). A row's exact sum is then
    the sum of its few exact parts, and ``math.fsum`` of those is the correctly rounded sum of the row:
    what ``math.fsum`` of the row's terms returns. Rows this cannot handle the same way (a non-finite
    term, a zero or subnormal-range result whose sign or last bit needs the terms themselves, values
    too large to split) are summed by ``math.fsum`` over their terms.
    """
    n, d = p.shape
    if p.size == 0 or not np.isfinite(p).all():
        return np.array([math.fsum(row) for row in p.tolist()], dtype=np.float64).reshape(n)
    peak = float(np.max(np.abs(p)))
    if peak == 0.0:  # every term a zero: the sum's sign follows theirs
        return np.array([math.fsum(row) for row in p.tolist()], dtype=np.float64)
    width = 52 - (d + 1).bit_length()
    exponent = math.frexp(peak)[1] + 53 - width  # every |term| < 2**frexp exponent <= 2**(exponent - 1)
    if not _MIN_SPLIT_EXPONENT <= exponent <= _MAX_SPLIT_EXPONENT:
        return np.array([math.fsum(row) for row in p.tolist()], dtype=np.float64)
    rest = p.copy()
    part = np.empty_like(p)
    parts = []
    while exponent >= _MIN_SPLIT_EXPONENT:
        c = math.ldexp(1.5, exponent)
        np.add(rest, c, out=part)
        np.subtract(part, c, out=part)
        np.subtract(rest, part, out=rest)
        parts.append(_tree_row_sums(part))
        exponent -= width
        if not rest.any():
            break
    sums = np.array([math.fsum(row) for row in np.stack(parts, axis=1).tolist()], dtype=np.float64)
    # Left to the terms themselves: rows with something left below the last split, and rows whose sum
    # is zero or tiny (fsum's sign of a zero, and subnormal rounding, follow the terms).
    redo = rest.any(axis=1) | (np.abs(sums) < 2.0**-1000)
    for i in np.flatnonzero(redo).tolist():
        sums[i] = math.fsum(p[i].tolist())
    return sums


def _tree_row_sums(x: np.ndarray) -> np.ndarray:
    """Each row's sum by halving (x is overwritten): exact when every partial sum is (`_exact_row_sums`)."""
    k = x.shape[1]
    while k > 1:
        h = k // 2
        np.add(x[:, :h], x[:, h : 2 * h], out=x[:, :h])
        if k % 2:
            np.add(x[:, 0], x[:, 2 * h], out=x[:, 0])
        k = h
    return x[:, 0].copy()


def norm(a: ArrayLike) -> float:
    """Euclidean length: sqrt of the fsum of squares."""
    return math.sqrt(dot(a, a))


def cosine(a: ArrayLike, b: ArrayLike) -> float:
    """cos of the angle between two vectors; 0.0 when either has length 0."""
    na, nb = norm(a), norm(b)
    if na == 0.0 or nb == 0.0:
        return 0.0
    return dot(a, b) / (na * nb)


def pearson(x: ArrayLike, y: ArrayLike) -> float | None:
    """Pearson r of two equally long vectors; None when fewer than 2 items or either is constant.

    Each side is first divided by its largest magnitude (r is invariant to it), so sums of squares
    neither overflow (values ~1e200) nor underflow (~1e-200), then centred on its exact mean.
    |r| can exceed 1 by an ulp; callers that promise [-1, 1] clip.

    The elementwise steps (scaling, centring, products) are NumPy's: each is one IEEE operation per item,
    correctly rounded like Python's own, so the bits are those of the item-by-item loop; only the sums
    need `math.fsum`. (Several times faster over the tens of thousands of items of an exact protocol.)
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ValueError(f"pearson of vectors of {len(a)} and {len(b)} items")
    if len(a) < 2 or a.min() == a.max() or b.min() == b.max():
        return None
    if len(a) >= _TWO_VALUED_FROM:
        two_a, two_b = _two_valued(a), _two_valued(b)
        if two_a is not None and two_b is not None:
            return _pearson_two_valued(two_a, two_b)
    return _pearson_general(a, b)


def _pearson_general(a: np.ndarray, b: np.ndarray) -> float | None:
    """`pearson` of two vectors of >= 2 items, neither constant: the item-by-item way."""
    ca, cb = _centred_unit(a), _centred_unit(b)
    denom = math.sqrt(math.fsum((ca * ca).tolist()) * math.fsum((cb * cb).tolist()))
    if not denom > 0:  # only reachable through extreme cancellation
        return None
    return math.fsum((ca * cb).tolist()) / denom


def _centred_unit(v: np.ndarray) -> np.ndarray:
    u = v / np.abs(v).max()
    m = math.fsum(u.tolist()) / len(u)
    return u - m


#: From this many items on, `pearson` of two vectors that each take two values (a concept's 0/1 labels, a
#: binary unit) counts them instead of summing item by item (`_pearson_two_valued`); below it the count
#: costs more than it saves.
_TWO_VALUED_FROM = 256


class _TwoValued:
    """A vector that takes exactly two values: lo < hi, ``high`` where it is hi, and how many of each."""

    __slots__ = ("hi", "high", "lo", "n_hi", "n_lo")

    def __init__(self, lo: float, hi: float, high: np.ndarray) -> None:
        self.lo, self.hi, self.high = lo, hi, high
        self.n_hi = int(np.count_nonzero(high))  # an integer count: exact, in any order
        self.n_lo = len(high) - self.n_hi


def _two_valued(v: np.ndarray) -> _TwoValued | None:
    """``v`` (not constant) as its two values and where each is, or None when it takes more than two."""
    lo, hi = float(v.min()), float(v.max())
    high = v == hi
    if not np.logical_or(high, v == lo, out=np.empty(len(v), dtype=bool)).all():
        return None
    return _TwoValued(lo, hi, high)


def _exact_sum(terms: list[tuple[int, float]]) -> float:
    """The correctly rounded value of sum(count x term): what ``math.fsum`` returns for ``count`` copies of
    each term. The sum is formed exactly as a fraction and rounded once by integer division, which Python
    rounds correctly (to nearest, ties to even, as ``math.fsum``)."""
    total = sum((Fraction(t) * k for k, t in terms if k), Fraction(0))
    return total.numerator / total.denominator


def _centred_values(v: _TwoValued) -> tuple[float, float]:
    """`_centred_unit`'s two values for the lo and the hi items, by the same IEEE operations on each."""
    peak = max(abs(v.lo), abs(v.hi))  # np.abs(v).max()
    ulo, uhi = v.lo / peak, v.hi / peak
    n = v.n_lo + v.n_hi
    mean = _exact_sum([(v.n_lo, ulo), (v.n_hi, uhi)]) / n  # math.fsum(u) / len(u)
    return ulo - mean, uhi - mean


def _pearson_two_valued(a: _TwoValued, b: _TwoValued) -> float | None:
    """`_pearson_general` of two two-valued vectors, the same bits, from four counts instead of a sum per item.

    Every item's centred value is one of two floats, each computed by the same correctly rounded operations
    as `_centred_unit` does item by item; so every product the general path sums is one of four floats
    (two for a square), and ``math.fsum`` of them is the correctly rounded sum of count x product, which
    `_exact_sum` forms exactly and rounds once. ``tests/core/test_exact.py`` checks the bits against
    `_pearson_general`. (The sign of a zero never matters here: no centred value is zero-signed in a sum
    that is exactly zero, and a zero sum is +0.0 both ways.)
    """
    alo, ahi = _centred_values(a)
    blo, bhi = _centred_values(b)
    n = a.n_lo + a.n_hi
    hh = int(np.count_nonzero(np.logical_and(a.high, b.high)))  # both high
    hl, lh = a.n_hi - hh, b.n_hi - hh
    ll = n - hh - hl - lh
    saa = _exact_sum([(a.n_lo, alo * alo), (a.n_hi, ahi * ahi)])
    sbb = _exact_sum([(b.n_lo, blo * blo), (b.n_hi, bhi * bhi)])
    denom = math.sqrt(saa * sbb)
    if not denom > 0:
        return None
    sab = _exact_sum([(hh, ahi * bhi), (hl, ahi * blo), (lh, alo * bhi), (ll, alo * blo)])
    return sab / denom
