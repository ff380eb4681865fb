"""vse.core.sanity: NeuronEval's missing- and extra-labels perturbations and the decrease count, as properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vse.core import sanity
from vse.core.sanity import SanityTest

concepts = st.lists(st.sampled_from([0.0, 1.0]), min_size=2, max_size=300).map(np.array)
seeds_st = st.integers(0, 2**32 - 1)


@given(concepts, seeds_st)
def test_missing_labels_only_drops_positives(c, seed):
    m = sanity.missing_labels(c, np.random.default_rng(seed))
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert np.all(m <= c)  # never adds a label


@given(concepts, seeds_st)
def test_extra_labels_only_adds_labels(c, seed):
    e = sanity.extra_labels(c, np.random.default_rng(seed))
    assert set(np.unique(e)) <= {0.0, 1.0}
    assert np.all(e >= c)  # never drops a label


def test_the_expected_changes_are_neuroneval_s():
    # Half the positives dropped, as many positives again added, in expectation (5,000 positives of 50,000).
    c = sanity.theoretical_concept(50_000, 0.1)
    rng = np.random.default_rng(0)
    assert sanity.missing_labels(c, rng).sum() == pytest.approx(2_500, rel=0.05)
    assert sanity.extra_labels(c, rng).sum() == pytest.approx(10_000, rel=0.05)


def test_a_concept_of_only_positives_gains_nothing():
    c = np.ones(5)
    assert sanity.extra_labels(c, np.random.default_rng(0)).tolist() == c.tolist()


def test_non_binary_concepts_are_refused_naming_the_index():
    with pytest.raises(ValueError, match="index 2"):
        sanity.missing_labels(np.array([0.0, 1.0, 0.5]), np.random.default_rng(0))


@given(st.integers(2, 5_000), st.floats(0.0001, 0.9999))
def test_theoretical_concept_has_round_f_n_leading_positives(n, f):
    k = round(f * n)
    if not 0 < k < n:
        with pytest.raises(ValueError, match="too small"):
            sanity.theoretical_concept(n, f)
        return
    c = sanity.theoretical_concept(n, f)
    assert c[:k].tolist() == [1.0] * k and c[k:].tolist() == [0.0] * (n - k)


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200).map(np.array), st.floats(0.001, 1))
def test_binarise_top_keeps_at_least_k_of_the_highest(x, f):
    c = sanity.binarise_top(x, f)
    k = math.ceil(f * len(x))
    assert c.sum() >= k
    # Every item kept is at least every item dropped.
    if 0 < c.sum() < len(x):
        assert x[c == 1].min() > x[c == 0].max()


def test_binarise_top_is_neuroneval_s_cutoff():
    assert sanity.binarise_top(np.array([5.0, 1.0, 3.0, 3.0, 0.0]), 0.4).tolist() == [1, 0, 1, 1, 0]


def test_count_decreases_uses_the_span_and_epsilon():
    base = [100.0, 100.0, 100.0, None, 50.0]
    pert = [99.0, 99.9, 101.0, 80.0, None]
    got = sanity.count_decreases(base, pert, span=200.0)
    # -1/200 = -0.005 < -0.001: a decrease; -0.1/200 = -0.0005: unchanged; +0.005: neither; None: unscorable.
    assert (got.cases, got.decreases, got.unchanged, got.unscorable) == (5, 1, 1, 2)
    assert got.decrease_share == 0.2 and got.unscorable_share == 0.4
    assert got.mean_change == pytest.approx((-0.005 - 0.0005 + 0.005) / 3)
    assert not got.passes


def test_an_unscorable_case_is_never_a_pass():
    got = sanity.count_decreases([None] * 10, [None] * 10, span=200.0)
    assert got.decrease_share == 0.0 and got.unscorable_share == 1.0 and got.mean_change is None


@pytest.mark.parametrize("test", list(SanityTest))
def test_perturb_dispatches_by_name(test):
    c = sanity.theoretical_concept(100, 0.2)
    a = sanity.perturb(test.value, c, np.random.default_rng(3))
    b = sanity.PERTURB[test](c, np.random.default_rng(3))
    assert a.tolist() == b.tolist()
