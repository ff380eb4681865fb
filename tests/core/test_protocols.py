"""Property tests of the scoring protocols' selection rules (vse.core.protocols).

The protocols are pure functions of (values, n, rng), so every rule in the module docstring is
checked over generated value lists (with many ties, since scaled values are small integers)
and generated pass sizes. Settings come from the repo's profile in tests/conftest.py.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vse.core.protocols import PROTOCOLS, heldout_shown, heldout_top, ranks, select

# Small integers make ties common (the scaled values are 0..10); floats cover the general case.
values_st = st.lists(
    st.one_of(st.integers(-3, 10).map(float), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
    min_size=1,
    max_size=120,
).map(np.array)
n_st = st.integers(1, 150)
seed_st = st.integers(0, 2**32 - 1)
shown_st = st.integers(1, 40)


def rank_of(values):
    """Position of each index in `ranks(values)` (0 = highest)."""
    r = np.empty(len(values), dtype=int)
    r[ranks(values)] = np.arange(len(values))
    return r


# ----------------------------------------------------------------------------- ranks


@given(values_st)
def test_ranks_are_descending_with_ties_by_lower_index(values):
    order = ranks(values)
    # A permutation: every index exactly once.
    assert sorted(order.tolist()) == list(range(len(values)))
    for a, b in zip(order[:-1], order[1:], strict=False):
        # Highest first; equal values keep index order (the tie rule everything else relies on).
        assert values[a] > values[b] or (values[a] == values[b] and a < b)


# ----------------------------------------------------------------------------- uniform


@given(values_st, n_st, seed_st)
def test_uniform_is_n_distinct_indices_in_range(values, n, seed):
    sel = select("uniform", values, n, np.random.default_rng(seed))
    assert len(sel) == min(n, len(values))
    assert len(set(sel.tolist())) == len(sel)  # no item predicted twice in one pass
    assert all(0 <= i < len(values) for i in sel.tolist())


# ----------------------------------------------------------------------------- top-and-random


@given(values_st, n_st, seed_st)
def test_top_and_random_holds_the_top_half_and_no_duplicates(values, n, seed):
    sel = select("top-and-random", values, n, np.random.default_rng(seed))
    k = min(n, len(values))
    assert len(sel) == k
    assert len(set(sel.tolist())) == len(sel)
    assert all(0 <= i < len(values) for i in sel.tolist())
    # Exactly the n//2 highest ranks (ties by lower index) are always in the pass.
    top = set(ranks(values)[: k // 2].tolist())
    assert top <= set(sel.tolist())


def test_top_and_random_top_uses_the_tie_rule():
    # Five tied maxima: the two "highest" are indices 0 and 1 (lower index first), on every seed.
    values = np.array([5.0, 5.0, 5.0, 5.0, 5.0] + [0.0] * 20)
    for seed in range(20):
        sel = set(select("top-and-random", values, 4, np.random.default_rng(seed)).tolist())
        assert {0, 1} <= sel


# ----------------------------------------------------------------------------- held out


@given(values_st, n_st, seed_st, shown_st)
def test_heldout_never_selects_a_shown_item(values, n, seed, n_shown):
    sel = select("top-and-random-heldout", values, n, np.random.default_rng(seed), n_shown=n_shown)
    shown = set(heldout_shown(values, n_shown).tolist())
    # The whole point of the protocol: recalling what the explainer saw earns nothing.
    assert not (set(sel.tolist()) & shown)
    assert len(set(sel.tolist())) == len(sel)
    assert len(sel) <= min(n, len(values))


@given(values_st, n_st, seed_st, shown_st)
def test_heldout_takes_only_odd_ranks_from_the_top(values, n, seed, n_shown):
    sel = select("top-and-random-heldout", values, n, np.random.default_rng(seed), n_shown=n_shown)
    k = min(n, len(values))
    r = rank_of(values)
    top_region = 2 * max(n_shown, k // 2)
    for i in sel.tolist():
        # Within the top block, only never-shown odd ranks; below it, anything.
        if r[i] < top_region:
            assert r[i] % 2 == 1, (i, r[i])
    # The held-out top (odd ranks 1, 3, ... of the top) is always in the pass.
    assert set(ranks(values)[1 : 2 * (k // 2) : 2].tolist()) <= set(sel.tolist())


@given(values_st, st.integers(1, 60))
def test_heldout_top_is_odd_ranks(values, n_top):
    r = rank_of(values)
    got = heldout_top(values, n_top)
    assert all(r[i] % 2 == 1 for i in got.tolist())
    assert len(got) == min(n_top, len(values) // 2)
    # Disjoint from what the explainer was shown, for the same number of pairs.
    assert not (set(got.tolist()) & set(heldout_shown(values, n_top).tolist()))


# ----------------------------------------------------------------------------- shown pairs


@given(values_st, shown_st)
def test_heldout_shown_is_even_ranks_ascending(values, n_shown):
    shown = heldout_shown(values, n_shown)
    r = rank_of(values)
    assert all(r[i] % 2 == 0 for i in shown.tolist())
    # Exactly ranks 0, 2, ..., up to the top 2 x n_shown (or as many as exist).
    assert sorted(r[shown].tolist()) == list(range(0, min(2 * n_shown, len(values)), 2))
    # Ascending by value: the explainer prompt lists pairs low to high.
    assert np.all(np.diff(values[shown]) >= 0)


def test_heldout_shown_exact_small_case():
    values = np.array([0.1, 0.9, 0.5, 0.7, 0.3])  # ranks: 1, 3, 2, 4, 0
    assert heldout_shown(values, 2).tolist() == [2, 1]  # ranks 0 and 2, ascending by value
    assert heldout_top(values, 2).tolist() == [3, 4]  # ranks 1 and 3


# ----------------------------------------------------------------------------- all, seeds, errors


@given(values_st, n_st, seed_st)
def test_all_is_every_index_once(values, n, seed):
    sel = select("all", values, n, np.random.default_rng(seed))
    assert sorted(sel.tolist()) == list(range(len(values)))


@given(values_st, n_st, seed_st, st.sampled_from(PROTOCOLS))
def test_same_seed_same_selection(values, n, seed, protocol):
    a = select(protocol, values, n, np.random.default_rng(seed), n_shown=5)
    b = select(protocol, values, n, np.random.default_rng(seed), n_shown=5)
    assert a.tolist() == b.tolist()


def test_different_seeds_differ_somewhere():
    # Guards against a selection that ignores the rng (then every seed would agree).
    values = np.arange(200, dtype=float)
    for protocol in ("uniform", "top-and-random", "top-and-random-heldout"):
        picks = {
            tuple(sorted(select(protocol, values, 20, np.random.default_rng(s), n_shown=5).tolist())) for s in range(5)
        }
        assert len(picks) > 1, protocol


def test_bad_protocol_and_n_are_refused():
    with pytest.raises(ValueError, match="not one of"):
        select("top", np.arange(5.0), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 1"):
        select("uniform", np.arange(5.0), 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="nan"):
        select("uniform", np.array([1.0, np.nan]), 1, np.random.default_rng(0))


def test_recall_free_leaves_out_the_top_by_raw_value_and_nothing_else():
    import numpy as np

    from vse.core.protocols import select

    scaled = np.array([10, 10, 10, 10, 3, 0, 0, 1])
    raw = np.array([0.97, 0.99, 0.98, 1.0, 0.3, 0.0, 0.01, 0.1])
    rng = np.random.default_rng(0)
    idx = select("recall-free", scaled, 1, rng, n_shown=2, strength=raw)
    # the top 2 by raw value are items 3 and 1 (by scaled integers, index order would pick 0 and 1)
    assert idx.tolist() == [0, 2, 4, 5, 6, 7]
    assert select("recall-free", scaled, 1, rng, n_shown=0).tolist() == list(range(8))


# ----------------------------------------------------------------------------- draw_pool


@given(values_st, n_st, seed_st, shown_st, st.sampled_from(PROTOCOLS))
def test_every_selection_lies_in_the_draw_pool(values, n, seed, n_shown, protocol):
    """What `check_scorable` looks at before any call is every item a pass can pick: no pass reaches outside it."""
    from vse.core.protocols import draw_pool

    pool = draw_pool(protocol, values, n, n_shown=n_shown)
    assert pool.tolist() == sorted(set(pool.tolist()))  # ascending, each item once
    for k in range(3):
        picked = select(protocol, values, n, np.random.default_rng([seed, k]), n_shown=n_shown)
        assert set(picked.tolist()) <= set(pool.tolist())
    if protocol in ("all", "recall-free"):  # the exact protocols pick the whole pool
        assert sorted(select(protocol, values, n, np.random.default_rng(seed), n_shown=n_shown)) == pool.tolist()


@given(values_st, n_st, st.lists(st.integers(0, 119), unique=True, min_size=1, max_size=60))
def test_a_universe_is_the_pool_and_top_and_random_refuses_one(values, n, universe):
    from vse.core.protocols import draw_pool

    universe = [u for u in universe if u < len(values)] or [0]
    for protocol in ("all", "recall-free", "uniform"):
        assert draw_pool(protocol, values, n, universe=np.array(universe)).tolist() == sorted(universe)
    with pytest.raises(ValueError, match="cannot be limited"):
        draw_pool("top-and-random", values, n, universe=np.array(universe))


def test_the_recall_free_pool_of_a_sparse_unit_is_all_zeros():
    """The issue's case: 20 non-zero values of 48, the top 25 shown: the 23 left are all 0."""
    from vse.core.protocols import draw_pool

    values = np.zeros(48)
    values[np.arange(0, 40, 2)] = np.arange(1, 21) % 10 + 1  # 20 non-zero items, spread over the set
    pool = draw_pool("recall-free", values, 50, n_shown=25)
    assert len(pool) == 23 and not values[pool].any()
    assert len(draw_pool("uniform", values, 50, n_shown=25)) == 48


# ----------------------------------------------------------------------------- Selector: select prepared once


def _select_as_written_first(protocol, values, n, rng, *, n_shown=25, strength=None, universe=None):
    """`select` before `Selector` (everything redone each pass): the items and the draws a Selector must keep."""
    from vse.core.protocols import EXACT_PROTOCOLS, Protocol, draw_outside

    x = np.asarray(values, dtype=np.float64)
    size = len(x)
    if universe is not None:
        universe = np.asarray(universe, dtype=int)
        if protocol in EXACT_PROTOCOLS:
            return np.sort(universe)
        return rng.choice(np.sort(universe), size=min(n, len(universe)), replace=False)
    if protocol == Protocol.ALL:
        return np.arange(size)
    if protocol == Protocol.RECALL_FREE:
        return np.sort(ranks(x if strength is None else strength)[n_shown:])
    n = min(n, size)
    if protocol == Protocol.UNIFORM:
        return rng.choice(size, size=n, replace=False)
    order = ranks(x)
    if protocol == Protocol.TOP_AND_RANDOM:
        top = order[: n // 2]
        excluded = set(top.tolist())
    else:
        top = heldout_top(x, n // 2)
        excluded = set(order[: 2 * max(n_shown, n // 2)].tolist())
    picked = np.concatenate([top, draw_outside(size, excluded, n - len(top), rng)])
    return rng.permutation(picked.astype(int))


@given(values_st, n_st, seed_st, shown_st, st.sampled_from(PROTOCOLS), st.booleans())
def test_a_selector_draws_what_select_drew_pass_after_pass(values, n, seed, n_shown, protocol, in_universe):
    from vse.core.protocols import Selector

    universe = None
    if in_universe:
        if protocol not in ("all", "recall-free", "uniform"):
            return
        universe = np.flatnonzero(np.random.default_rng(seed).random(len(values)) < 0.5)
    strength = values + np.linspace(0, 1e-3, len(values))  # raw values that break the scaled ties
    selector = Selector(protocol, values, n, n_shown=n_shown, strength=strength, universe=universe)
    mine, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
    for _ in range(4):  # one generator through several passes: the same items and the same use of it
        got = selector.draw(mine)
        want = _select_as_written_first(
            protocol, values, n, theirs, n_shown=n_shown, strength=strength, universe=universe
        )
        assert got.tolist() == want.tolist()
    assert mine.random() == theirs.random()
