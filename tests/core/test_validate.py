"""Matched vs mismatched validation (vse.core.discrimination): the statistics and the item sets.

`compare` is checked on constructed score matrices whose answer is known (a strong diagonal
must win everywhere; a weak or negative one must not look significant). `neurons_needed` is
checked against scipy's t quantiles and against real t-tests. The item-set properties guard the
held-out protocol: an item the explainer was shown must never be scored as held out.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sst

from vse.core.discrimination import (
    auprc,
    build_pool,
    compare,
    item_sets,
    markdown,
    meta_auprc,
    nearest_others,
    neurons_needed,
    score_matrix,
)
from vse.core.protocols import ranks

K = 8


def matrix(diagonal: float, seed: int = 0, noise: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, noise, size=(K, K))
    s[np.diag_indices(K)] = diagonal + rng.normal(0.0, noise, size=K)
    return s


# ----------------------------------------------------------------------------- compare


def test_strong_diagonal_wins_everywhere():
    c = compare(matrix(60.0), protocol="uniform", target="weight-label", method="weight-label")
    assert c.n_neurons == K
    assert c.wins == K
    assert c.mean_rank == 1.0  # own explanation first on every neuron (chance: 4.5)
    assert c.p_value < 1e-6
    assert c.p_wilcoxon <= 1 / 2**K + 1e-12  # the smallest exact one-sided p with K pairs
    assert c.matched_mean > 50 > 5 > abs(c.mismatched_mean)
    assert c.neurons_needed_for_p01 is not None and c.neurons_needed_for_p01 <= 3
    assert (c.protocol, c.target, c.method) == ("uniform", "weight-label", "weight-label")


@pytest.mark.parametrize("diagonal", [0.0, -30.0])
def test_weak_or_negative_diagonal_is_not_significant(diagonal):
    c = compare(matrix(diagonal, seed=3), protocol="uniform", target="t", method="m")
    assert c.p_value > 0.05 and c.p_wilcoxon > 0.05
    if diagonal < 0:
        assert c.wins == 0 and c.mean_rank == K and c.p_value > 0.99
        assert c.neurons_needed_for_p01 is None  # a negative effect never gets significant


def test_compare_means_and_ranks_exact():
    # Own explanation on top for neurons 0 and 1, last for neuron 2.
    s = np.array([[10.0, 0.0, 5.0], [2.0, 9.0, 6.0], [4.0, 1.0, 0.0]])
    c = compare(s, protocol="p", target="t", method="m")
    assert c.matched_mean == pytest.approx((10 + 9 + 0) / 3)
    # Column means of the off-diagonal entries: (2+4)/2, (0+1)/2, (5+6)/2.
    assert c.mismatched_mean == pytest.approx((3.0 + 0.5 + 5.5) / 3)
    assert c.wins == 2
    assert c.mean_rank == pytest.approx((1 + 1 + 3) / 3)


def test_constant_positive_differences():
    # Every own explanation beats the others by exactly 10: p is 0, and two neurons suffice.
    s = np.eye(5) * 10.0
    c = compare(s, protocol="p", target="t", method="m")
    assert c.p_value == 0.0 and c.wins == 5 and c.mean_rank == 1.0
    assert c.neurons_needed_for_p01 == 2


def test_all_equal_scores():
    c = compare(np.full((4, 4), 7.0), protocol="p", target="t", method="m")
    assert c.p_value == 1.0 and c.p_wilcoxon == 1.0 and c.wins == 0
    assert c.mean_rank == 1.0  # ties do not push the own explanation down
    assert c.neurons_needed_for_p01 is None


def test_to_json_and_markdown():
    c = compare(matrix(60.0), protocol="uniform", target="t", method="m")
    j = c.to_json()
    assert j["wins"] == K and j["matched_mean"] == round(c.matched_mean, 4)
    table = markdown([c])
    assert f"| uniform | t | m | {K} |" in table and f"{K}/{K}" in table


# ----------------------------------------------------------------------------- neurons needed


def sample_with(mean: float, sd: float, n: int, seed: int = 0) -> np.ndarray:
    """n values with exactly this mean and sample sd (so a t-test sees exactly this effect)."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


@given(st.floats(0.05, 3.0), st.integers(2, 30))
def test_neurons_needed_is_the_smallest_n_from_t_quantiles(effect, m):
    diffs = sample_with(effect, 1.0, m)
    n = neurons_needed(diffs)
    assert n is not None and n >= 2
    # At n the one-sided t-test of this effect is significant; at n - 1 it is not.
    assert effect * math.sqrt(n) > sst.t.ppf(0.99, n - 1) * (1 - 1e-9)
    if n > 2:
        assert effect * math.sqrt(n - 1) <= sst.t.ppf(0.99, n - 2) * (1 + 1e-9)


@pytest.mark.parametrize("effect", [0.3, 0.8, 1.5])
def test_neurons_needed_agrees_with_a_real_t_test(effect):
    # Measured on 10 neurons (mean/sd = effect); a study of n neurons with the same mean and sd
    # passes the one-sided t-test at 0.01, one neuron fewer does not.
    n = neurons_needed(sample_with(2.0 * effect, 2.0, 10))
    assert n is not None and n > 2
    at_n = sst.ttest_1samp(sample_with(2.0 * effect, 2.0, n, seed=1), 0.0, alternative="greater").pvalue
    below = sst.ttest_1samp(sample_with(2.0 * effect, 2.0, n - 1, seed=1), 0.0, alternative="greater").pvalue
    assert at_n < 0.01 <= below


@given(st.floats(0.05, 2.0), st.floats(1.01, 4.0))
def test_neurons_needed_is_monotone_in_the_effect(effect, factor):
    small = neurons_needed(sample_with(effect, 1.0, 12))
    big = neurons_needed(sample_with(effect * factor, 1.0, 12))
    assert big <= small  # a bigger effect never needs more neurons


def test_neurons_needed_none_cases():
    assert neurons_needed(np.array([1.0])) is None  # no spread to measure
    assert neurons_needed(sample_with(-0.5, 1.0, 10)) is None
    assert neurons_needed(sample_with(0.0, 1.0, 10)) is None
    assert neurons_needed(sample_with(0.01, 1.0, 10), limit=50) is None  # beyond the limit


# ----------------------------------------------------------------------------- pool and item sets

neuron_values = st.integers(20, 80).flatmap(
    lambda size: st.lists(
        st.lists(st.integers(-2, 10).map(float), min_size=size, max_size=size).map(np.array), min_size=1, max_size=4
    )
)


@given(neuron_values, st.integers(1, 15), st.integers(0, 30), st.integers(0, 2**32 - 1))
def test_build_pool_holds_every_top_and_the_random_items(values, n_top, n_random, seed):
    pool, rand = build_pool(values, n_top, n_random, np.random.default_rng(seed))
    size = len(values[0])
    pool_set = set(pool.tolist())
    assert len(pool_set) == len(pool)  # no item twice in the pool
    assert all(0 <= i < size for i in pool_set)
    for v in values:
        assert set(ranks(v)[:n_top].tolist()) <= pool_set
    assert len(rand) == min(n_random, size) and len(set(rand.tolist())) == len(rand)
    assert set(rand.tolist()) <= pool_set
    # Nothing else: the pool is exactly the tops plus the random items.
    assert pool_set == set(rand.tolist()).union(*(ranks(v)[:n_top].tolist() for v in values))


@given(neuron_values, st.integers(2, 20), st.integers(1, 12), st.integers(0, 30), st.integers(0, 2**32 - 1))
def test_item_sets_never_score_a_shown_item_as_held_out(values, n_top, n_shown, n_random, seed):
    pool, rand = build_pool(values, n_top, n_random, np.random.default_rng(seed))
    for v in values:
        sets = item_sets(v, pool, rand, n_top, n_shown)
        order = ranks(v)
        shown = set(order[: 2 * n_shown : 2].tolist())  # even ranks: what the explainer saw
        for s in (sets.uniform, sets.top_and_random, sets.heldout):
            assert s.dtype.kind == "i"  # index arrays, even when empty (n_random = 0)
        held_items = set(pool[sets.heldout].tolist())
        assert not (held_items & shown)
        # Its top part is the odd ranks within the top n_top.
        assert set(order[1:n_top:2].tolist()) <= held_items
        # Uniform is the shared random items; top-and-random adds the neuron's top.
        assert sorted(pool[sets.uniform].tolist()) == sorted(rand.tolist())
        tr = set(pool[sets.top_and_random].tolist())
        assert tr == set(order[:n_top].tolist()) | set(rand.tolist())
        for s in (sets.top_and_random, sets.heldout):
            assert len(set(s.tolist())) == len(s)


def test_item_sets_small_exact():
    v = np.array([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 0.0])  # ranks: 0, 2, 4, 6, 5, 3, 1, 7
    pool = np.arange(8)
    rand = np.array([1, 3, 5, 7])
    sets = item_sets(v, pool, rand, n_top=4, n_shown=2)  # shown: ranks 0, 2 -> items 0, 4
    assert sets.top_and_random.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    # Held out: odd top ranks 1, 3 -> items 2, 6; random items not shown and not in the top.
    assert sets.heldout.tolist() == [1, 2, 3, 5, 6, 7]


# ----------------------------------------------------------------------------- score matrix


def test_score_matrix_diagonal_from_perfect_predictions():
    truths = [np.array([0.0, 1, 2, 3, 4]), np.array([4.0, 3, 2, 1, 0])]
    pred = np.array(truths)
    sets = [np.arange(5), np.arange(5)]
    s = score_matrix(pred, truths, sets)
    np.testing.assert_allclose(s, [[100.0, -100.0], [-100.0, 100.0]])
    # Subtracting explanation 0's predictions as the prior leaves it constant (score 0) and
    # turns explanation 1's into twice itself (the same correlations).
    np.testing.assert_allclose(score_matrix(pred, truths, sets, prior=pred[0]), [[0.0, 0.0], [-100.0, 100.0]])


# ----------------------------------------------------------------------------- Meta-AUPRC


def test_auprc_of_a_perfect_and_of_a_tied_score():
    assert auprc([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0]) == 1.0
    assert auprc([1.0, 1.0, 1.0, 1.0], [1, 0, 0, 0]) == 0.25  # one threshold: precision = prevalence


def test_auprc_is_average_precision():
    # Ranked: +, -, +, -: recall 1/2 at precision 1, then 1 at precision 2/3.
    assert auprc([4.0, 3.0, 2.0, 1.0], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))


@given(st.lists(st.tuples(st.floats(-100, 100, allow_nan=False), st.booleans()), min_size=1, max_size=60))
def test_auprc_is_within_0_and_1_and_ignores_the_order_of_the_pairs(pairs):
    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    if not y.any():
        with pytest.raises(ValueError, match="positive"):
            auprc(s, y)
        return
    got = auprc(s, y)
    assert 0.0 < got <= 1.0
    order = np.arange(len(s))[::-1]
    assert auprc(s[order], y[order]) == got


def test_meta_auprc_perfect_floor_and_hard_negatives():
    s = np.array([[9.0, 1.0, 2.0], [1.0, 7.0, 7.5], [0.0, 7.9, 9.0]])  # column j: unit j
    m = meta_auprc(s, nearest=np.array([1, 2, 1]))
    # Ranked: 9, 9 (both own: recall 2/3 at precision 1), 7.9, 7.5 (others), 7.0 (own: recall 1 at 3/5).
    assert m.auprc == pytest.approx(2 / 3 + (1 / 3) * (3 / 5))
    assert m.floor == pytest.approx(1 / 3)
    # Hard pairs: own 9, 7, 9 against s[1,0] = 1, s[2,1] = 7.9, s[1,2] = 7.5: the same ranking of the own ones.
    assert m.hard == pytest.approx(2 / 3 + (1 / 3) * (3 / 5))
    assert meta_auprc(np.diag([3.0, 2.0]) - 1, nearest=np.array([1, 0])).hard == 1.0


def test_meta_auprc_refuses_a_missing_diagonal_and_a_self_neighbour():
    s = np.array([[np.nan, 1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="diagonal"):
        meta_auprc(s)
    with pytest.raises(ValueError, match="another unit"):
        meta_auprc(np.eye(2), nearest=np.array([0, 0]))


def test_nearest_others_never_names_itself():
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    assert nearest_others(v).tolist() == [1, 0, 1]
