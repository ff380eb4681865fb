"""Properties of the paper's integer scaling (vse.core.scaling)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vse.core.scaling import flip_negative, scale_signed, scale_to_int

# Bounded floats without subnormals-to-be: tiny magnitudes are snapped to 0 so that
# multiplying by 2**k (k in [-16, 16]) is exact (no overflow, no loss of bits in subnormals).
_raw = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
finite = _raw.map(lambda v: 0.0 if abs(v) < 1e-200 else v)
vectors = hnp.arrays(np.float64, st.integers(0, 40), elements=finite)
nonempty = hnp.arrays(np.float64, st.integers(1, 40), elements=finite)
tops = st.integers(1, 100)
pow2 = st.integers(-16, 16).map(lambda k: 2.0**k)


# ---------------------------------------------------------------- scale_to_int


@given(vectors, tops)
def test_scale_to_int_range_dtype_and_length(values, top):
    out = scale_to_int(values, top)
    assert out.dtype == np.int64
    assert out.shape == values.shape
    assert np.all((out >= 0) & (out <= top))


@given(nonempty, tops)
def test_scale_to_int_max_maps_to_top(values, top):
    assume(values.max() > 0)
    out = scale_to_int(values, top)
    assert out[np.argmax(values)] == top
    assert out.max() == top


@given(vectors, tops)
def test_scale_to_int_is_monotone(values, top):
    out = scale_to_int(values, top)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)


@given(vectors, tops)
def test_scale_to_int_negatives_and_zeros_become_zero(values, top):
    out = scale_to_int(values, top)
    assert np.all(out[values <= 0] == 0)


@given(vectors, tops, pow2)
def test_scale_to_int_invariant_to_positive_power_of_two_factor(values, top, factor):
    np.testing.assert_array_equal(scale_to_int(values * factor, top), scale_to_int(values, top))


@given(vectors, tops)
def test_scale_to_int_matches_formula(values, top):
    out = scale_to_int(values, top)
    if values.size == 0 or values.max() <= 0:
        assert np.all(out == 0)
        return
    peak = values.max()
    expected = [math.floor(max(v, 0.0) / peak * top + 0.5) for v in values]
    assert out.tolist() == expected


@given(hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e6, 0.0)), tops)
def test_scale_to_int_all_nonpositive_gives_zeros(values, top):
    out = scale_to_int(values, top)
    assert out.dtype == np.int64 and np.all(out == 0)


def test_scale_to_int_rounds_half_up_not_to_even():
    # 0.5, 1.5, 2.5 (of top=10 with max 10) -> 1, 2, 3; banker's rounding would give 0, 2, 2.
    out = scale_to_int([0.5, 1.5, 2.5, 10.0], top=10)
    assert out.tolist() == [1, 2, 3, 10]


def test_scale_to_int_examples():
    assert scale_to_int([-3.0, 0.0, 2.0, 4.0]).tolist() == [0, 0, 5, 10]
    assert scale_to_int([]).dtype == np.int64 and scale_to_int([]).size == 0
    assert scale_to_int([0, 0, 0]).tolist() == [0, 0, 0]
    assert scale_to_int((1, 2, 3), top=3).tolist() == [1, 2, 3]  # any array-like


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, 2.0, 3.0, float("nan")], r"values\[3\] is nan"),
        ([1.0, float("inf"), float("nan")], r"values\[1\] is inf"),
        ([float("-inf")], r"values\[0\] is -inf"),
        ([[1.0, 2.0], [3.0, 4.0]], r"1-D.*\(2, 2\)"),
        (5.0, r"1-D"),
        (["a", "b"], r"numbers"),
    ],
)
@pytest.mark.parametrize("func", [scale_to_int, scale_signed, flip_negative])
def test_bad_values_raise_with_location(func, values, message):
    with pytest.raises(ValueError, match=message):
        func(values)


@pytest.mark.parametrize("top", [0, -1, True, 2.5])
@pytest.mark.parametrize("func", [scale_to_int, scale_signed])
def test_bad_top_raises(func, top):
    with pytest.raises(ValueError, match="top"):
        func([1.0, 2.0], top)


# ---------------------------------------------------------------- scale_signed


@given(vectors, tops)
def test_scale_signed_range_and_signs(values, top):
    out = scale_signed(values, top)
    assert out.dtype == np.int64 and out.shape == values.shape
    assert np.all((out >= -top) & (out <= top))
    # A value never changes sign (it may round to 0), and zeros stay zero.
    assert np.all(out[values > 0] >= 0)
    assert np.all(out[values < 0] <= 0)
    assert np.all(out[values == 0] == 0)


@given(nonempty, tops)
def test_scale_signed_extremes_map_to_plus_minus_top(values, top):
    out = scale_signed(values, top)
    if values.max() > 0:
        assert out[np.argmax(values)] == top
    if values.min() < 0:
        assert out[np.argmin(values)] == -top


@given(vectors, tops)
def test_scale_signed_positive_side_agrees_with_scale_to_int(values, top):
    out = scale_signed(values, top)
    pos = values > 0
    np.testing.assert_array_equal(out[pos], scale_to_int(values, top)[pos])


@given(vectors, tops)
def test_scale_signed_is_antisymmetric(values, top):
    np.testing.assert_array_equal(scale_signed(-values, top), -scale_signed(values, top))


@given(vectors, tops)
def test_scale_signed_is_monotone(values, top):
    out = scale_signed(values, top)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)


@given(vectors, tops, pow2)
def test_scale_signed_invariant_to_positive_power_of_two_factor(values, top, factor):
    np.testing.assert_array_equal(scale_signed(values * factor, top), scale_signed(values, top))


@given(
    hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(0.0, 1e6)),
    hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(0.0, 1e6)),
    pow2,
    tops,
)
def test_scale_signed_sides_are_independent(pos, neg, factor, top):
    # Rescaling only the negative side must not move the positive side, and vice versa.
    a = scale_signed(np.concatenate([pos, -neg]), top)
    b = scale_signed(np.concatenate([pos, -neg * factor]), top)
    np.testing.assert_array_equal(a, b)


def test_scale_signed_example():
    # Max positive 4, max |negative| 2: each side scaled by its own extreme.
    assert scale_signed([4.0, 2.0, 0.0, -1.0, -2.0]).tolist() == [10, 5, 0, -5, -10]
    assert scale_signed([-0.25, -1.0], top=2).tolist() == [-1, -2]  # -0.5 rounds away from 0
    assert scale_signed([]).size == 0


# ---------------------------------------------------------------- flip_negative


@given(vectors)
def test_flip_negative_negates_without_negative_zero(values):
    out = flip_negative(values)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, -values)
    assert not np.any(np.signbit(out[out == 0]))


@given(vectors, tops)
def test_flip_then_scale_keeps_only_former_negatives(values, top):
    out = scale_to_int(flip_negative(values), top)
    assert np.all(out[values >= 0] == 0)
    if values.size and values.min() < 0:
        assert out[np.argmin(values)] == top
    # Same as the negative half of the signed scaling, mirrored.
    neg = values < 0
    np.testing.assert_array_equal(out[neg], -scale_signed(values, top)[neg])


def test_flip_negative_does_not_modify_input():
    values = np.array([1.0, -2.0])
    flip_negative(values)
    assert values.tolist() == [1.0, -2.0]
