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
    ca, cb = _centred_unit(a), _centred_unit(b)
    denom = math.sqrt(math.fsum((ca * ca).tolist()) * math.fsum((cb * cb).tolist()))
    if not denom > 0:  # only reachable through extreme cancellation
        return None
    return math.fsum((ca * cb).tolist()) / denom


def _centred_unit(v: np.ndarray) -> np.ndarray:
    u = v / np.abs(v).max()
    m = math.fsum(u.tolist()) / len(u)
    return u - m
