"""Run llama-cpp-python's OpenAI-compatible server with two speed fixes for logprobs.

Until vse moved to llama-server this was vse's local server (``vse llm serve``); vse now runs llama.cpp's own
``llama-server``, and this patch stays only so `bench/server_compare.py` can compare the two:
run it with a Python that has ``llama-cpp-python[server]==0.3.36``
(``python bench/fastlogprobs.py --model FILE ...``).

Measured on 2 CPU cores with Qwen2.5-Coder-1.5B (151,936-token vocabulary), a one-token
completion with ``logprobs`` on an 800-token cached prompt took about 2 s, of which the model
itself needed about 0.3 s. The rest is Python in ``Llama._create_completion`` (0.3.36):

1. ``Llama.logits_to_logprobs(self._scores)[token_offset:]`` log-softmaxes the logits of *every*
   position of the prompt (800 x 151,936 floats, ~2 s) and then uses only the generated rows.
   We return a lazy view that computes a row when it is read: the same numbers, only the rows
   that are used.
2. ``sorted(zip(row, range(n)), reverse=True)`` sorts the whole vocabulary as Python tuples
   (~0.4 s per returned position) to keep the top few. We give the module a ``sorted`` that does
   the same ordering with NumPy when it sees that call, and defers to the builtin otherwise.

Both gave byte-identical replies (tested while this was vse's server: git history,
tests/llm/test_fastlogprobs.py); `bench/logprobs_patch.py` measures the difference.
``python bench/fastlogprobs.py --model FILE ...`` takes the same arguments as
``python -m llama_cpp.server``.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

_LARGE = 4096  # below this, the builtin paths are fast enough and stay untouched


class LazyLogprobs:
    """Rows of ``log_softmax(logits)`` computed on demand; supports ``[i]``, ``[a:b]``, iteration, len."""

    def __init__(self, logits: np.ndarray, rows: range | None = None, original=None):
        self._logits = logits
        self._rows = rows if rows is not None else range(logits.shape[0])
        self._row_fn = original

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return LazyLogprobs(self._logits, self._rows[key], self._row_fn)
        return self._row_fn(self._logits[self._rows[key]])

    def __iter__(self) -> Iterator[np.ndarray]:
        for r in self._rows:
            yield self._row_fn(self._logits[r])


def _fast_sorted(iterable: Any, /, *, key=None, reverse: bool = False):
    """``sorted`` with a NumPy path for ``sorted(zip(values, range(n)), reverse=True)``."""
    if key is None and reverse and isinstance(iterable, zip):
        pairs = list(iterable)
        if len(pairs) >= _LARGE and all(type(p) is tuple and len(p) == 2 for p in (pairs[0], pairs[-1])):
            values = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
            index = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
            if not np.isnan(values).any():
                # Tuples sort by value, then by index; reversed: both descending.
                order = np.lexsort((-index, -values))
                return [pairs[i] for i in order]
        return builtins.sorted(pairs, reverse=True)
    return builtins.sorted(iterable, key=key, reverse=reverse)


def apply() -> None:
    """Patch llama_cpp.llama in this process (idempotent)."""
    import llama_cpp.llama as ll

    if getattr(ll, "_vse_fast_logprobs", False):
        return
    original = ll.Llama.logits_to_logprobs

    def logits_to_logprobs(logits, axis: int = -1):
        arr = logits if isinstance(logits, np.ndarray) else None
        if arr is not None and arr.ndim == 2 and axis in (-1, 1) and arr.shape[0] > 1:
            return LazyLogprobs(arr, original=original)
        return original(logits, axis=axis)

    ll.Llama.logits_to_logprobs = staticmethod(logits_to_logprobs)
    ll.sorted = _fast_sorted
    ll._vse_fast_logprobs = True


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - runs the real server
    apply()
    import runpy

    sys.argv = ["llama_cpp.server", *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":  # pragma: no cover
    main()
