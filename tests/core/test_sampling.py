"""Properties of the subset strategies (vse.core.sampling)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vse.core.sampling import (
    STRATEGIES,
    get_strategy,
    highest_ratio,
    random,
    random_highlight_nonzero,
    random_ratio,
    top,
)

# Scaled-integer-like values with plenty of zeros and ties (the realistic and the hard case).
values_st = hnp.arrays(np.int64, st.integers(0, 60), elements=st.one_of(st.just(0), st.integers(-10, 10)))
ns = st.integers(0, 80)
seeds = st.integers(0, 2**32 - 1)
fractions = st.one_of(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]), st.floats(0, 1))
NAMES = sorted(STRATEGIES)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _assert_valid_indices(idx: np.ndarray, values: np.ndarray, n: int) -> None:
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64 and idx.ndim == 1
    assert idx.size == min(n, values.size)
    assert len(set(idx.tolist())) == idx.size, "duplicate indices"
    assert np.all((idx >= 0) & (idx < values.size))


def _expected_nonzero(k: int, fraction: float, n_nonzero: int, n_zero: int) -> int:
    """The documented count rule: round-half-up target, then the shortfall rule."""
    want = math.floor(k * fraction + 0.5)
    return max(min(want, n_nonzero), k - n_zero)


# ---------------------------------------------------------------- all named strategies


def test_registry_has_exactly_the_documented_names():
    assert set(STRATEGIES) == {
        "top",
        "random",
        "random-50/50",
        "random-75/25",
        "random-90/10",
        "highest-50/50",
        "highest-75/25",
        "highest-90/10",
    }
    for name in STRATEGIES:
        assert get_strategy(name) is STRATEGIES[name]


@given(st.sampled_from(NAMES), values_st, ns, seeds)
def test_every_strategy_gives_distinct_in_range_indices_of_the_right_size(name, values, n, seed):
    _assert_valid_indices(get_strategy(name)(values, n, _rng(seed)), values, n)


@given(st.sampled_from(NAMES), values_st, ns, seeds)
def test_every_strategy_is_deterministic_for_a_seed(name, values, n, seed):
    strategy = get_strategy(name)
    np.testing.assert_array_equal(strategy(values, n, _rng(seed)), strategy(values, n, _rng(seed)))


@given(st.sampled_from(NAMES), values_st, seeds)
def test_n_at_least_len_returns_every_index(name, values, seed):
    idx = get_strategy(name)(values, values.size + 3, _rng(seed))
    assert sorted(idx.tolist()) == list(range(values.size))


@given(st.sampled_from(NAMES), values_st, seeds)
def test_strategies_do_not_modify_values(name, values, seed):
    before = values.copy()
    get_strategy(name)(values, 10, _rng(seed))
    np.testing.assert_array_equal(values, before)


def test_different_seeds_give_different_subsets():
    values = np.arange(100) % 7
    for name in NAMES:
        if name == "top":
            continue
        draws = {tuple(get_strategy(name)(values, 20, _rng(s)).tolist()) for s in range(5)}
        assert len(draws) > 1, name


def test_random_strategies_do_not_leak_values_through_order():
    # Zeros first / highest last would tell the LLM the answer; a shuffled order must not be
    # sorted by value (for this seed; deterministic).
    values = np.array([0] * 50 + list(range(1, 51)))
    for name in NAMES:
        if name == "top":
            continue
        shown = values[get_strategy(name)(values, 30, _rng(0))]
        assert not np.all(np.diff(shown) >= 0), name
        assert not np.all(np.diff(shown) <= 0), name


# ---------------------------------------------------------------- top


@given(values_st, ns)
def test_top_returns_the_highest_values_in_ascending_order(values, n):
    idx = top(values, n)
    _assert_valid_indices(idx, values, n)
    chosen = values[idx]
    assert np.all(np.diff(chosen) >= 0), "not ascending by value"
    rest = np.delete(values, idx)
    if chosen.size and rest.size:
        assert chosen.min() >= rest.max()


@given(values_st, ns)
def test_top_matches_brute_force_including_ties(values, n):
    k = min(n, values.size)
    by_rank = sorted(range(values.size), key=lambda i: (-values[i], i))[:k]
    expected = sorted(by_rank, key=lambda i: (values[i], i))
    assert top(values, n).tolist() == expected


def test_top_ignores_rng_and_example():
    values = [3, 0, 7, 7, 1, 9]
    assert top(values, 3).tolist() == [2, 3, 5]
    assert top(values, 2, _rng(1)).tolist() == [2, 5]  # tie 7/7 cut: lower index kept
    assert top(values, 0).tolist() == []
    assert top([], 5).tolist() == []


# ---------------------------------------------------------------- random


@given(values_st, ns, seeds)
def test_random_is_a_valid_subset(values, n, seed):
    _assert_valid_indices(random(values, n, _rng(seed)), values, n)


def test_random_is_roughly_uniform():
    # 4000 draws of 3 out of 10: each index expected 1200 times (sd ~29); fixed seed.
    rng = _rng(12345)
    counts = np.zeros(10)
    for _ in range(4000):
        counts[random(np.zeros(10), 3, rng)] += 1
    assert np.all(np.abs(counts - 1200) < 150), counts


# ---------------------------------------------------------------- random_highlight_nonzero


@given(values_st, ns, seeds)
def test_random_highlight_shows_random_subset_and_highlights_its_nonzero(values, n, seed):
    shown, highlight = random_highlight_nonzero(values, n, _rng(seed))
    _assert_valid_indices(shown, values, n)
    np.testing.assert_array_equal(shown, random(values, n, _rng(seed)))
    assert highlight.dtype == np.int64
    assert set(highlight.tolist()) == {i for i in shown.tolist() if values[i] != 0}
    assert len(highlight) == len(set(highlight.tolist()))
    # ascending by value, ties by index
    keys = [(values[i], i) for i in highlight.tolist()]
    assert keys == sorted(keys)


# ---------------------------------------------------------------- ratios


@given(values_st, ns, seeds, fractions)
def test_random_ratio_counts(values, n, seed, fraction):
    idx = random_ratio(values, n, _rng(seed), fraction)
    _assert_valid_indices(idx, values, n)
    k = idx.size
    n_nonzero = int(np.count_nonzero(values))
    got = int(np.count_nonzero(values[idx]))
    assert got == _expected_nonzero(k, fraction, n_nonzero, values.size - n_nonzero)


@given(values_st, ns, seeds, fractions)
def test_highest_ratio_counts_and_takes_the_highest_nonzero(values, n, seed, fraction):
    idx = highest_ratio(values, n, _rng(seed), fraction)
    _assert_valid_indices(idx, values, n)
    k = idx.size
    n_nonzero = int(np.count_nonzero(values))
    picked_nonzero = [i for i in idx.tolist() if values[i] != 0]
    m = _expected_nonzero(k, fraction, n_nonzero, values.size - n_nonzero)
    assert len(picked_nonzero) == m
    # The non-zero part is exactly the m highest non-zero items (ties: lower index first).
    ranking = sorted(np.flatnonzero(values).tolist(), key=lambda i: (-values[i], i))
    assert set(picked_nonzero) == set(ranking[:m])


@given(
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 40),
    seeds,
    st.sampled_from([0.5, 0.75, 0.9]),
)
def test_ratio_is_exact_when_both_kinds_are_plentiful(n_nonzero, n_zero, n, seed, fraction):
    values = np.array([0] * n_zero + [5] * n_nonzero)
    want = math.floor(n * fraction + 0.5)
    if n > values.size or want > n_nonzero or n - want > n_zero:
        return  # shortfall cases are covered by the count tests above
    for func in (random_ratio, highest_ratio):
        idx = func(values, n, _rng(seed), fraction)
        assert int(np.count_nonzero(values[idx])) == want
        assert int(np.sum(values[idx] == 0)) == n - want


def test_ratio_examples_and_shortfall():
    values = np.array([0] * 100 + list(range(1, 101)))
    # 75/25 of 50: 37.5 rounds half-up to 38 non-zero, 12 zero.
    idx = STRATEGIES["random-75/25"](values, 50, _rng(0))
    assert np.count_nonzero(values[idx]) == 38
    idx = STRATEGIES["highest-50/50"](values, 50, _rng(0))
    assert sorted(values[idx][values[idx] != 0].tolist()) == list(range(76, 101))
    # Only 3 non-zero items: all of them, the rest zeros.
    few = np.array([0] * 20 + [4, 8, 2])
    idx = STRATEGIES["highest-90/10"](few, 10, _rng(0))
    assert sorted(few[idx].tolist()) == [0] * 7 + [2, 4, 8]
    # Only 2 zeros: both, and the next-highest non-zero items fill the gap.
    idx = highest_ratio(np.array([0, 0, 1, 2, 3, 4, 5, 6]), 6, _rng(0), 0.5)
    assert sorted(np.array([0, 0, 1, 2, 3, 4, 5, 6])[idx].tolist()) == [0, 0, 3, 4, 5, 6]


# ---------------------------------------------------------------- errors


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ValueError, match="unknown sampling strategy 'highest-60/40'") as err:
        get_strategy("highest-60/40")
    for name in STRATEGIES:
        assert name in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_negative_n_raises(name):
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        get_strategy(name)([1, 2, 3], -1, _rng(0))


@pytest.mark.parametrize("n", [2.0, True, None])
def test_non_integer_n_raises(n):
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        random([1, 2, 3], n, _rng(0))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "top"])
def test_missing_rng_raises(name):
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        get_strategy(name)([1, 2, 3], 2, None)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "half"])
def test_bad_fraction_raises(fraction):
    with pytest.raises(ValueError, match="nonzero_fraction"):
        random_ratio([0, 1], 1, _rng(0), fraction)
    with pytest.raises(ValueError, match="top_fraction"):
        highest_ratio([0, 1], 1, _rng(0), fraction)


@pytest.mark.parametrize("name", NAMES)
def test_nan_value_is_named(name):
    with pytest.raises(ValueError, match=r"values\[2\] is nan"):
        get_strategy(name)([0.0, 1.0, float("nan")], 2, _rng(0))
    with pytest.raises(ValueError, match="1-D"):
        get_strategy(name)([[0.0, 1.0]], 2, _rng(0))
