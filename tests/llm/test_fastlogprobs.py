"""The server speed patch must not change a single returned number or order."""

import builtins

import numpy as np
import pytest

llama = pytest.importorskip("llama_cpp.llama")

from vse.llm.fastlogprobs import LazyLogprobs, _fast_sorted, apply  # noqa: E402


def test_lazy_logprobs_equal_the_full_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 5000)).astype(np.single)
    logits[3, 7] = -np.inf
    original = llama.Llama.logits_to_logprobs
    full = original(logits)
    lazy = LazyLogprobs(logits, original=original)
    assert len(lazy) == 12
    np.testing.assert_array_equal(np.stack(list(lazy)), full)
    np.testing.assert_array_equal(np.stack(list(lazy[5:])), full[5:])
    np.testing.assert_array_equal(lazy[5:][1], full[6])


@pytest.mark.parametrize("n", [10, 5000])
def test_fast_sorted_matches_builtin_including_ties(n):
    rng = np.random.default_rng(n)
    values = rng.integers(0, 50, size=n).astype(np.single) / 7  # many ties
    want = builtins.sorted(zip(values, range(n)), reverse=True)
    got = _fast_sorted(zip(values, range(n)), reverse=True)
    assert got == want
    assert [type(v) for v, _ in got[:3]] == [type(v) for v, _ in want[:3]]


def test_fast_sorted_defers_for_everything_else():
    assert _fast_sorted([3, 1, 2]) == [1, 2, 3]
    assert _fast_sorted(["b", "a"], key=str.upper, reverse=True) == ["b", "a"]


def test_apply_patches_once_and_keeps_1d_behaviour():
    apply()
    apply()
    row = np.random.default_rng(1).normal(size=300).astype(np.single)
    out = llama.Llama.logits_to_logprobs(row)
    assert isinstance(out, np.ndarray) and out.shape == (300,)
    assert isinstance(llama.Llama.logits_to_logprobs(np.zeros((4, 10), np.single)), LazyLogprobs)
    assert llama.sorted is _fast_sorted
