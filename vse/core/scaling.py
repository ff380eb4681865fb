"""Turn raw activations or weights into the small integers the LLM reads and writes.

The paper (Sec. 3.1.2, 3.2.2, following Bills et al. 2023) shows the LLM integers in [0, 10]:
negative values are zeroed, the largest value becomes 10, everything else is scaled linearly
and rounded. Appendix C.3.2 scales positives into [0, 10] and negatives into [-10, 0]
independently; Appendix C.3.1 explains negative weights by flipping the sign first.

Choices made here:

* Rounding is half-up, ``floor(x + 0.5)`` (mirrored for negatives), not NumPy's default
  round-half-to-even. Banker's rounding sends 0.5 -> 0 but 1.5 -> 2, so two neurons with the
  same shape of activations can get different integer profiles depending on where a value
  falls; half-up is monotone, predictable and what a reader of the paper would assume.
* ``v / max * top`` is evaluated in that order so the maximum maps to exactly ``top``
  (``max / max`` is exactly 1.0 in IEEE arithmetic) and the map stays monotone: each step
  (division by a positive number, multiplication by a positive number, floor) is monotone.
* NaN or infinite values are rejected instead of being silently zeroed: they mean something
  upstream (a hook, a dtype overflow) went wrong, and the error names the first bad index.
* If nothing is positive there is nothing to scale against, so the result is all zeros
  (a dead neuron shows as all 0, which is what the LLM should see).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def as_finite_1d(values: ArrayLike, name: str = "values") -> np.ndarray:
    """Return ``values`` as a 1-D float64 array, or raise ValueError naming what is wrong.

    Shared by the scaling, sampling and stats modules so every entry point reports bad
    input the same way, e.g. ``"values[3] is nan"``.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D array of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] is {arr[i]}")
    return arr


def _check_top(top: int) -> int:
    # bool is an int subclass; top=True would silently mean 1.
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)):
        raise ValueError(f"top must be a positive integer, got {top!r}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    return int(top)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    """Round half away from zero: sign(x) * floor(|x| + 0.5), as int64."""
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def scale_to_int(values: ArrayLike, top: int = 10) -> np.ndarray:
    """Scale to integers in ``[0, top]``: negatives -> 0, the maximum -> ``top``.

    Each value ``v`` becomes ``floor(max(v, 0) / max(values) * top + 0.5)``. If no value is
    positive (including the all-zero and the empty case) the result is all zeros.

    Raises ValueError for a non-1-D input, for NaN/inf (naming the first bad index) and for
    ``top < 1``.
    """
    top = _check_top(top)
    arr = as_finite_1d(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    peak = arr.max()
    if peak <= 0:
        return np.zeros(arr.size, dtype=np.int64)
    return _round_half_up(np.maximum(arr, 0.0) / peak * top)


def scale_signed(values: ArrayLike, top: int = 10) -> np.ndarray:
    """Scale positives into ``[0, top]`` and negatives into ``[-top, 0]``, independently.

    Positives are divided by the largest positive value, negatives by the largest negative
    magnitude (paper App. C.3.2), so the strongest excitation maps to ``top`` and the
    strongest inhibition to ``-top`` even when their magnitudes differ. Rounding is half away
    from zero, so ``scale_signed(-v) == -scale_signed(v)``. A side with no values stays 0.

    Same errors as :func:`scale_to_int`.
    """
    top = _check_top(top)
    arr = as_finite_1d(values)
    out = np.zeros(arr.size, dtype=np.float64)
    pos = arr > 0
    neg = arr < 0
    if pos.any():
        out[pos] = arr[pos] / arr[pos].max() * top
    if neg.any():
        # Divide by the positive magnitude so the sign comes from arr and the rounding below is
        # the exact mirror image of the positive side.
        out[neg] = arr[neg] / (-arr[neg].min()) * top
    return _round_half_up(out)


def flip_negative(values: ArrayLike) -> np.ndarray:
    """Return ``-values`` as float64, so that a following :func:`scale_to_int` keeps only the
    formerly negative values (paper App. C.3.1: explain a neuron's inhibitions).

    Zeros come back as ``+0.0`` (not ``-0.0``) so printed prompts do not show ``-0``.
    Same input validation as :func:`scale_to_int`.
    """
    arr = as_finite_1d(values)
    # Adding +0.0 turns the -0.0 produced by negating 0.0 back into +0.0.
    return np.negative(arr) + 0.0
