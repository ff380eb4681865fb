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

    The products are NumPy's elementwise ones (each correctly rounded on its own, as in `dot`; no
    reduction, no BLAS) and each row's sum is one ``math.fsum``: the embedding simulator's cosines,
    one per item, for hundreds of items per explanation."""
    m, w = np.asarray(rows, dtype=np.float64), np.asarray(v, dtype=np.float64).ravel()
    if m.ndim != 2 or m.shape[1] != len(w):
        raise ValueError(f"dots of rows shaped {m.shape} with a vector of {len(w)} items")
    return np.array([math.fsum(row) for row in (m * w).tolist()], dtype=np.float64)


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
