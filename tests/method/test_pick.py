"""Best of N's picks (`vse.method.best_of.choose`): the held-in best, or the most specific against neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vse.core.vocab import Pick
from vse.method.best_of import centred_rows, choose, nearest_units, specificity

scores = st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=12)


@given(scores)
def test_held_in_takes_the_first_of_equal_bests(own):
    c = choose(own)
    assert own[c] == max(own)
    assert all(own[i] < own[c] for i in range(c))


@given(scores, st.integers(1, 5), st.data())
def test_specific_is_held_in_minus_the_neighbours_mean(own, k, data):
    on = [data.draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=k, max_size=k)) for _ in own]
    key = specificity(own, on)
    c = choose(own, Pick.SPECIFIC, on)
    assert key[c] == max(key)
    assert key == pytest.approx([o - sum(n) / k for o, n in zip(own, on, strict=True)], abs=1e-9)


def test_specific_prefers_the_candidate_that_fits_its_neighbours_less():
    # candidate 0 fits the unit best but fits its neighbours as well: generic; candidate 1 singles the unit out
    own, on = [10.0, 8.0], [[9.0, 11.0], [0.0, 1.0]]
    assert choose(own) == 0
    assert choose(own, Pick.SPECIFIC, on) == 1


def test_specific_without_neighbours_is_held_in():
    assert choose([1.0, 3.0, 2.0], Pick.SPECIFIC, [[], [], []]) == 1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no candidate"):
        choose([])
    with pytest.raises(ValueError, match="rows of neighbour scores"):
        choose([1.0, 2.0], Pick.SPECIFIC, [[1.0]])
    with pytest.raises(ValueError, match="not one of"):
        choose([1.0], "nearest")


def test_nearest_units_by_correlation_ties_by_index():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    values = np.array([x, -x, 2 * x + 1, x * x, np.ones(4), 3 * x])
    rows = centred_rows(values)
    assert np.allclose(rows[4], 0.0)  # a constant unit correlates with nothing
    # units 2 and 5 correlate perfectly with unit 0: tied, the lower index first; then the square; unit 1 last
    assert nearest_units(rows, 0, 5) == [2, 5, 3, 4, 1]
    assert nearest_units(rows, 0, 2) == [2, 5]
    with pytest.raises(ValueError, match="not one of the 6 rows"):
        nearest_units(rows, 6, 2)


@given(st.integers(2, 8), st.integers(0, 2**16))
def test_centred_rows_give_pearson_r(n, seed):
    values = np.random.default_rng(seed).normal(size=(3, n))
    rows = centred_rows(values)
    r = float(np.sum(rows[0] * rows[1]))
    assert r == pytest.approx(np.corrcoef(values[0], values[1])[0, 1], abs=1e-9)
