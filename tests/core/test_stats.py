"""Properties of the scores, the confidence interval and the Algorithm 1 stopper (vse.core.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vse.core.stats import (
    StopResult,
    StopRule,
    accuracy,
    ci_half_width,
    correlation_score,
    mae,
    mse,
    run_until_confident,
    should_stop,
    summarize,
)

floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
ints = st.integers(-1000, 1000)


@st.composite
def pairs(draw, elements=floats, min_size=0, max_size=40):
    n = draw(st.integers(min_size, max_size))
    a = draw(hnp.arrays(np.float64, n, elements=elements))
    b = draw(hnp.arrays(np.float64, n, elements=elements))
    return a, b


def _well_spread(x: np.ndarray) -> bool:
    """Non-constant with a spread that is not lost in float rounding."""
    return x.size >= 2 and np.ptp(x) > 1e-3 * max(1.0, float(np.abs(x).max()))


score_lists = hnp.arrays(np.float64, st.integers(0, 30), elements=st.floats(-100, 100))
spread_lists = score_lists.filter(_well_spread)
confidences = st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]) | st.floats(0.01, 0.99)

# ---------------------------------------------------------------- correlation_score


@given(pairs())
def test_correlation_in_range_and_symmetric(ab):
    a, b = ab
    r = correlation_score(a, b)
    assert isinstance(r, float) and -100.0 <= r <= 100.0
    assert r == correlation_score(b, a)


@given(pairs(min_size=2))
def test_correlation_agrees_with_scipy_pearsonr(ab):
    a, b = ab
    assume(_well_spread(a) and _well_spread(b))
    expected = 100.0 * scipy.stats.pearsonr(a, b).statistic
    assert correlation_score(a, b) == pytest.approx(expected, abs=1e-6)


@given(pairs(elements=ints, min_size=2), st.floats(0.01, 100), st.floats(-1e3, 1e3))
def test_correlation_invariant_to_positive_affine_maps(ab, scale, shift):
    a, b = ab
    assume(np.ptp(a) > 0 and np.ptp(b) > 0)
    r = correlation_score(a, b)
    assert correlation_score(a * scale + shift, b) == pytest.approx(r, abs=1e-6)
    assert correlation_score(a, b * scale + shift) == pytest.approx(r, abs=1e-6)


@given(pairs())
def test_correlation_flips_sign_under_negation(ab):
    a, b = ab
    r = correlation_score(a, b)
    assert correlation_score(-a, b) == pytest.approx(-r, abs=1e-9)
    assert correlation_score(-a, -b) == pytest.approx(r, abs=1e-9)


@given(hnp.arrays(np.float64, st.integers(2, 40), elements=floats).filter(_well_spread))
def test_correlation_with_itself_is_100(a):
    assert correlation_score(a, a) == pytest.approx(100.0, abs=1e-9)
    assert correlation_score(a, -a) == pytest.approx(-100.0, abs=1e-9)


@given(hnp.arrays(np.float64, st.integers(0, 40), elements=floats), floats)
def test_correlation_with_a_constant_is_zero(a, c):
    const = np.full(a.size, c)
    assert correlation_score(a, const) == 0.0
    assert correlation_score(const, a) == 0.0


@given(floats, floats)
def test_correlation_of_fewer_than_two_items_is_zero(x, y):
    assert correlation_score([x], [y]) == 0.0
    assert correlation_score([], []) == 0.0


def test_correlation_survives_huge_and_tiny_magnitudes():
    # Naive sums of squares would overflow to inf (or underflow to 0) here.
    assert correlation_score([1e200, 2e200, 3e200], [1.0, 2.0, 3.0]) == pytest.approx(100.0)
    assert correlation_score([1e-200, 2e-200, 3e-200], [3.0, 2.0, 1.0]) == pytest.approx(-100.0)


def test_correlation_errors_name_the_problem():
    with pytest.raises(ValueError, match="predicted has 2 items but true has 3"):
        correlation_score([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=r"predicted\[1\] is nan"):
        correlation_score([1, float("nan"), 3], [1, 2, 3])
    with pytest.raises(ValueError, match=r"true\[2\] is inf"):
        correlation_score([1, 2, 3], [1, 2, float("inf")])


# ---------------------------------------------------------------- ci_half_width


@given(spread_lists, confidences)
def test_ci_half_width_agrees_with_scipy_t_interval(scores, confidence):
    n = scores.size
    lo, hi = scipy.stats.t.interval(confidence, n - 1, loc=scores.mean(), scale=scipy.stats.sem(scores))
    assert ci_half_width(scores, confidence) == pytest.approx((hi - lo) / 2, rel=1e-9, abs=1e-9)


@given(spread_lists)
def test_ci_ddof0_reproduces_paper_and_is_narrower(scores):
    n = scores.size
    wide = ci_half_width(scores)
    narrow = ci_half_width(scores, ddof=0)
    assert narrow == pytest.approx(wide * math.sqrt((n - 1) / n), rel=1e-9)
    assert narrow < wide


def test_ci_ddof0_is_about_18_percent_tighter_at_n3():
    scores = [10.0, 20.0, 40.0]
    assert ci_half_width(scores, ddof=0) / ci_half_width(scores) == pytest.approx(0.8165, abs=1e-4)


@given(spread_lists.filter(lambda x: x.size <= 10), st.integers(1, 4))
@settings(max_examples=100)
def test_ci_shrinks_as_copies_of_the_scores_accumulate(scores, k):
    assert ci_half_width(np.tile(scores, k + 1)) < ci_half_width(np.tile(scores, k))


@given(st.floats(-100, 100), st.integers(2, 30), confidences, st.sampled_from([0, 1]))
def test_ci_is_exactly_zero_for_identical_scores(score, n, confidence, ddof):
    assert ci_half_width([score] * n, confidence, ddof=ddof) == 0.0


@given(hnp.arrays(np.float64, st.integers(0, 1), elements=st.floats(-100, 100)))
def test_ci_is_infinite_below_two_scores(scores):
    assert ci_half_width(scores) == math.inf


@given(spread_lists, st.floats(0.05, 0.9), st.floats(0.01, 0.09))
def test_ci_widens_with_confidence(scores, confidence, extra):
    assert ci_half_width(scores, confidence + extra) > ci_half_width(scores, confidence)


@given(spread_lists, st.integers(-4, 4).map(lambda k: 2.0**k), st.floats(-1e3, 1e3))
def test_ci_is_shift_invariant_and_scale_equivariant(scores, factor, shift):
    hw = ci_half_width(scores)
    assert ci_half_width(scores * factor) == pytest.approx(hw * factor, rel=1e-9)
    assert ci_half_width(scores + shift) == pytest.approx(hw, rel=1e-6)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_ci_rejects_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1"):
        ci_half_width([1.0, 2.0, 3.0], confidence)


@pytest.mark.parametrize("ddof", [2, -1, 0.5, True])
def test_ci_rejects_bad_ddof(ddof):
    with pytest.raises(ValueError, match="ddof must be 0"):
        ci_half_width([1.0, 2.0, 3.0], ddof=ddof)


def test_ci_names_bad_score():
    with pytest.raises(ValueError, match=r"scores\[2\] is nan"):
        ci_half_width([1.0, 2.0, float("nan")])


# ---------------------------------------------------------------- Algorithm 1 stopper

rules = st.builds(
    lambda lo, extra, hw, conf, ddof: StopRule(
        min_runs=lo, max_runs=lo + extra, half_width=hw, confidence=conf, ddof=ddof
    ),
    st.integers(2, 6),
    st.integers(0, 8),
    st.floats(0.5, 30),
    st.sampled_from([0.8, 0.9, 0.95]),
    st.sampled_from([0, 1]),
)
# Score streams long enough for any rule above (max_runs <= 14): some tight, some wild.
streams = st.one_of(
    st.lists(st.floats(-100, 100), min_size=14, max_size=14),
    st.tuples(st.floats(-50, 50), st.lists(st.floats(-3, 3), min_size=14, max_size=14)).map(
        lambda t: [t[0] + d for d in t[1]]
    ),
)


def _confident(scores, rule: StopRule) -> bool:
    return ci_half_width(scores, rule.confidence, ddof=rule.ddof) < rule.half_width


@given(streams, rules)
@settings(max_examples=150)
def test_run_until_confident_follows_algorithm_1(stream, rule):
    calls = []

    def score_once(i):
        calls.append(i)
        return stream[i]

    res = run_until_confident(score_once, rule)
    assert isinstance(res, StopResult)
    assert calls == list(range(res.runs)), "score_once called with 0-based repetition indices"
    assert rule.min_runs <= res.runs <= rule.max_runs
    assert res.scores == stream[: res.runs]
    assert res.mean == pytest.approx(np.mean(stream[: res.runs]))
    assert res.half_width == ci_half_width(stream[: res.runs], rule.confidence, ddof=rule.ddof)
    # Stops as soon as the rule holds: never confident at an earlier admissible length ...
    for j in range(rule.min_runs, res.runs):
        assert not _confident(stream[:j], rule)
    # ... and stopping early means it was confident.
    if res.runs < rule.max_runs:
        assert _confident(stream[: res.runs], rule)
    assert res.hit_cap == (res.runs == rule.max_runs and not _confident(stream[: res.runs], rule))


@given(streams, rules, st.integers(0, 14))
def test_should_stop_decision(stream, rule, n):
    scores = stream[:n]
    if n < rule.min_runs:
        assert should_stop(scores, rule) is False
    elif n >= rule.max_runs:
        assert should_stop(scores, rule) is True
    else:
        assert should_stop(scores, rule) == _confident(scores, rule)


@given(st.floats(-100, 100), rules)
def test_identical_scores_stop_exactly_at_min_runs(score, rule):
    # Even a zero-width interval must not stop the loop before the minimum number of runs.
    res = run_until_confident(lambda i: score, rule)
    assert res.runs == rule.min_runs and not res.hit_cap and res.half_width == 0.0


@given(rules)
def test_wild_scores_run_to_the_cap_and_report_it(rule):
    assume(rule.half_width < 30)
    res = run_until_confident(lambda i: 100.0 if i % 2 else -100.0, rule)
    assert res.runs == rule.max_runs and res.hit_cap


def test_default_rule_is_the_papers():
    rule = StopRule()
    assert (rule.min_runs, rule.half_width, rule.confidence, rule.max_runs, rule.ddof) == (
        3,
        5.0,
        0.90,
        20,
        1,
    )
    # Paper numbers: scores 40, 42, 44 -> t_{0.95,2}=2.92 * 2/sqrt(3) = 3.37 < 5: stop at 3.
    assert run_until_confident(lambda i: 40.0 + 2 * i, rule).runs == 3


def test_cap_reached_but_confident_is_not_hit_cap():
    rule = StopRule(min_runs=3, max_runs=3)
    assert run_until_confident(lambda i: 50.0 + i, rule).hit_cap is False
    assert run_until_confident(lambda i: [0.0, 100.0, -100.0][i], rule).hit_cap is True


@given(streams, rules, st.integers(1, 14))
def test_summarize_matches_the_loop_and_resumes(stream, rule, n):
    res = run_until_confident(lambda i: stream[i], rule)
    assert summarize(res.scores, rule) == res
    part = summarize(stream[:n], rule)
    assert part.runs == n and part.scores == stream[:n]
    assert part.hit_cap == (n >= rule.max_runs and not _confident(stream[:n], rule))


def test_summarize_empty_raises():
    with pytest.raises(ValueError, match="scores is empty"):
        summarize([], StopRule())


def test_nan_score_is_reported_with_its_repetition():
    with pytest.raises(ValueError, match=r"score_once\(1\) returned nan"):
        run_until_confident(lambda i: [10.0, float("nan")][i], StopRule())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_runs": 1}, "min_runs must be >= 2"),
        ({"min_runs": 5, "max_runs": 4}, r"max_runs \(4\) must be >= min_runs \(5\)"),
        ({"half_width": 0.0}, "half_width must be a positive number"),
        ({"half_width": -1.0}, "half_width must be a positive number"),
        ({"half_width": float("inf")}, "half_width must be a positive number"),
        ({"confidence": 1.0}, "StopRule.confidence must be strictly between 0 and 1"),
        ({"confidence": 0.0}, "confidence"),
        ({"ddof": 2}, "StopRule.ddof"),
        ({"max_runs": 10.5}, "max_runs must be an integer"),
    ],
)
def test_stop_rule_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StopRule(**kwargs)


# ---------------------------------------------------------------- accuracy / mse / mae

int_pairs = pairs(elements=st.integers(0, 10), min_size=1)


@given(int_pairs)
def test_accuracy_is_the_fraction_of_exact_matches(ab):
    a, b = ab
    acc = accuracy(a, b)
    assert 0.0 <= acc <= 1.0
    assert acc == pytest.approx(sum(x == y for x, y in zip(a, b, strict=False)) / a.size)
    assert acc == accuracy(b, a)


@given(pairs(min_size=1))
def test_mse_mae_basic_properties(ab):
    a, b = ab
    m2, m1 = mse(a, b), mae(a, b)
    assert m2 >= 0 and m1 >= 0
    assert m1 <= math.sqrt(m2) * (1 + 1e-12) + 1e-12  # Jensen: mean|d| <= sqrt(mean d^2)
    assert m2 == mse(b, a) and m1 == mae(b, a)


@given(hnp.arrays(np.float64, st.integers(1, 40), elements=floats))
def test_perfect_prediction(a):
    assert accuracy(a, a) == 1.0
    assert mse(a, a) == 0.0
    assert mae(a, a) == 0.0


def test_metric_examples():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    assert mse([0, 0], [3, 4]) == 12.5
    assert mae([0, 0], [3, -4]) == 3.5


@pytest.mark.parametrize("func", [accuracy, mse, mae])
def test_metric_errors(func):
    with pytest.raises(ValueError, match="predicted has 1 items but true has 2"):
        func([1], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        func([], [])
    with pytest.raises(ValueError, match=r"true\[0\] is nan"):
        func([1], [float("nan")])
