"""Benchmark: llama-cpp-python's logprobs post-processing, as shipped vs with vse's patch.

Reproduces, on synthetic logits of the real shapes (an 800-token prompt, Qwen's 151,936-token
vocabulary), the two steps `bench/fastlogprobs.py` replaces, both ways in the same run:
the log-softmax of every prompt row when one generated row is used, and the Python sort of a
whole vocabulary row to keep its top 20. Prints seconds per call for each and the speed-up.
"""

import builtins
import time

import numpy as np
from fastlogprobs import LazyLogprobs, _fast_sorted  # bench/fastlogprobs.py (run from bench/)
from llama_cpp.llama import Llama


def best_of(f, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(800, 151_936)).astype(np.single)
    original = Llama.logits_to_logprobs
    row = original(scores[-1])

    full = best_of(lambda: list(zip([0], original(scores)[799:], strict=False)))
    lazy = best_of(lambda: list(zip([0], LazyLogprobs(scores, original=original)[799:], strict=False)))
    slow_sort = best_of(lambda: builtins.sorted(zip(row, range(len(row)), strict=False), reverse=True)[:20])
    fast_sort = best_of(lambda: _fast_sorted(zip(row, range(len(row)), strict=False), reverse=True)[:20])
    assert (
        builtins.sorted(zip(row, range(len(row)), strict=False), reverse=True)[:20]
        == _fast_sorted(zip(row, range(len(row)), strict=False), reverse=True)[:20]
    )

    print("| step (per call) | llama-cpp-python 0.3.36 | vse patch | speed-up |")
    print("|---|---|---|---|")
    print(f"| log-softmax, 800-token prompt, 1 row used | {full:.3f} s | {lazy:.3f} s | {full / lazy:.0f}x |")
    print(f"| top-20 of one 151,936-token row | {slow_sort:.3f} s | {fast_sort:.3f} s | {slow_sort / fast_sort:.1f}x |")


if __name__ == "__main__":
    main()
