"""vse.core.exact: correctly rounded sums, so a recorded number has the same bits on every machine."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vse.core import exact

REPO = Path(__file__).resolve().parents[2]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
vectors = st.lists(finite, min_size=1, max_size=60)


def pairs(min_size: int = 1):
    return st.integers(min_size, 40).flatmap(lambda n: st.tuples(*(st.lists(finite, min_size=n, max_size=n),) * 2))


@given(vectors, st.randoms(use_true_random=False))
def test_fsum_and_mean_do_not_depend_on_the_order_of_the_terms(x, rnd):
    y = list(x)
    rnd.shuffle(y)
    assert exact.fsum(x) == exact.fsum(y)
    assert exact.mean(x) == exact.mean(y)
    assert exact.var(x) == exact.var(y)


@given(pairs(), st.randoms(use_true_random=False))
def test_dot_and_pearson_do_not_depend_on_the_order_of_the_items(ab, rnd):
    a, b = ab
    order = list(range(len(a)))
    rnd.shuffle(order)
    a2, b2 = [a[i] for i in order], [b[i] for i in order]
    assert exact.dot(a, b) == exact.dot(a2, b2) == exact.dot(b, a)
    assert exact.pearson(a, b) == exact.pearson(a2, b2)


@given(vectors)
def test_fsum_and_mean_agree_with_numpy_to_rounding(x):
    assert exact.fsum(x) == pytest.approx(float(np.sum(x)), rel=1e-9, abs=1e-6)
    assert exact.mean(x) == pytest.approx(float(np.mean(x)), rel=1e-9, abs=1e-6)


@given(
    st.integers(1, 6).flatmap(
        lambda d: st.tuples(
            st.lists(st.lists(finite, min_size=d, max_size=d), min_size=1, max_size=5),
            st.lists(finite, min_size=d, max_size=d),
        )
    )
)
def test_dots_is_dot_row_by_row_bit_for_bit(rows_v):
    rows, v = rows_v
    got = exact.dots(np.array(rows), np.array(v))
    assert got.tolist() == [exact.dot(r, v) for r in rows]


any_finite = st.floats(allow_nan=False, allow_infinity=False)  # every exponent, subnormals, both zeros
spread = st.sampled_from([1e-300, 1e-30, 2.0**-53, 1e-8, 1.0, 3.0, 2.0**52, 1e30, 1e300, 5e-324])


def _bits(x) -> bytes:
    return np.asarray(x, dtype=np.float64).tobytes()  # -0.0 and 0.0 differ here


@given(
    st.integers(1, 70).flatmap(
        lambda d: st.lists(
            st.lists(st.one_of(any_finite, spread, spread.map(lambda x: -x)), min_size=d, max_size=d),
            min_size=1,
            max_size=6,
        )
    )
)
def test_row_sums_are_fsum_of_each_row_bit_for_bit(rows):
    # The split sums (exact._exact_row_sums) against math.fsum term by term, over every finite double:
    # exponents far apart, cancellation, ties, subnormals, signed zeros, overflowing sums.
    p = np.array(rows, dtype=np.float64)
    try:
        expected = [math.fsum(r) for r in rows]
    except OverflowError:
        with pytest.raises(OverflowError):
            exact._exact_row_sums(p)
        return
    assert _bits(exact._exact_row_sums(p)) == _bits(expected)


@pytest.mark.parametrize(
    "row",
    [
        [1.0, 2.0**-53],  # a tie: rounds to even (1.0)
        [1.0 + 2.0**-52, 2.0**-53],  # a tie: rounds to even (up)
        [1.0, 2.0**-53, 2.0**-160],  # just above the tie
        [1.0, 2.0**-53, -(2.0**-160)],  # just below it
        [1e16, 1.0, -1e16],
        [-0.0, -0.0],
        [0.0, -0.0],
        [1e-310, -1e-310, 5e-324],
        [2.0**-1000, 2.0**-1060, -(2.0**-1000)],
        [1e300, 1e300, -1e300, 1e-300],
    ],
)
def test_row_sums_at_the_edges(row):
    p = np.array([row, row[::-1]], dtype=np.float64)
    assert _bits(exact._exact_row_sums(p)) == _bits([math.fsum(row)] * 2)


def test_dots_over_embedding_sized_rows_are_fsum_bit_for_bit():
    # The embedding simulator's case: 384-dim unit vectors from float16, hundreds of rows.
    rng = np.random.default_rng(5)
    m = rng.standard_normal((300, 384)).astype(np.float16).astype(np.float64)
    m /= np.sqrt(np.array([exact.dot(r, r) for r in m]))[:, None]
    v = m[7] * -1.5
    assert _bits(exact.dots(m, v)) == _bits([math.fsum((r * v).tolist()) for r in m])


def test_dots_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="dots of rows"):
        exact.dots(np.zeros((2, 3)), np.zeros(4))


def test_fsum_is_exact_where_naive_sums_are_not():
    assert exact.fsum([1e16, 1.0, -1e16]) == 1.0
    assert exact.fsum([0.1] * 10) == 1.0
    assert exact.fsum([]) == 0.0


@given(vectors, st.sampled_from([0, 1]))
def test_var_and_std_agree_with_numpy(x, ddof):
    if len(x) <= ddof:
        with pytest.raises(ValueError, match="ddof"):
            exact.var(x, ddof)
        return
    v = exact.var(x, ddof)
    assert v >= 0
    assert v == pytest.approx(float(np.var(x, ddof=ddof)), rel=1e-7, abs=1e-6)
    assert exact.std(x, ddof) == math.sqrt(v)


def test_the_variance_of_equal_values_is_zero_and_an_empty_mean_raises():
    assert exact.var([0.1] * 7, 1) == 0.0
    with pytest.raises(ValueError, match="empty"):
        exact.mean([])


@given(pairs(min_size=2))
def test_pearson_agrees_with_numpy_and_stays_in_range(ab):
    a, b = ab
    r = exact.pearson(a, b)
    if min(a) == max(a) or min(b) == max(b):
        assert r is None
        return
    assert r is not None and -1 - 1e-12 <= r <= 1 + 1e-12
    ref = np.corrcoef(a, b)[0, 1]
    if np.isfinite(ref):
        assert r == pytest.approx(ref, abs=1e-6)


def test_pearson_is_scale_free_and_survives_extreme_magnitudes():
    assert exact.pearson([1e200, 2e200, 3e200], [1e-200, 2e-200, 4e-200]) == pytest.approx(
        exact.pearson([1, 2, 3], [1, 2, 4]), rel=1e-15
    )
    assert exact.pearson([1.0], [2.0]) is None
    with pytest.raises(ValueError, match="3 and 2"):
        exact.pearson([1, 2, 3], [1, 2])


@given(pairs())
def test_cosine_is_symmetric_bounded_and_zero_for_a_null_vector(ab):
    a, b = ab
    c = exact.cosine(a, b)
    assert c == exact.cosine(b, a)
    assert -1 - 1e-12 <= c <= 1 + 1e-12
    assert exact.cosine(a, [0.0] * len(a)) == 0.0
    assert exact.norm(a) == pytest.approx(float(np.linalg.norm(a)), rel=1e-12)


# --- the check that keeps BLAS and NumPy reductions off the scoring paths -------------------------------

#: Folders whose code computes what results/ records. vision/ is left out: it runs the models that
#: made the committed fixtures (inputs to a replay, never recomputed by one).
SCORING_PATHS = ["core", "method", "outputs", "studies", "data", "llm"]
BLAS_NAMES = {"dot", "vdot", "inner", "matmul", "einsum", "tensordot", "corrcoef", "cov", "linalg"}
REDUCTIONS = {"mean", "sum", "std", "var", "average", "nanmean", "nansum", "median", "prod", "cumsum"}


def _chain(node: ast.expr) -> list[str]:
    """np.linalg.norm -> ["np", "linalg", "norm"]; x.mean -> ["?", "mean"]."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    names.append(node.id if isinstance(node, ast.Name) else "?")
    return names[::-1]


def offending_calls(source: str) -> list[str]:
    """`@`, np.<BLAS or reduction>(...) and x.<reduction or dot>(...) in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            found.append(f"line {node.lineno}: @")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            chain = _chain(node.func)
            if chain[0] in {"np", "numpy"}:
                bad = [n for n in chain[1:] if n in BLAS_NAMES | REDUCTIONS]
            elif chain[0] == "exact":  # vse.core.exact's own
                bad = []
            else:  # a method on an array: x.mean(), x.dot(y)
                bad = [chain[-1]] if chain[-1] in REDUCTIONS | {"dot"} else []
            found += [f"line {node.lineno}: .{bad[0]}"] if bad else []
    return found


def test_the_check_finds_what_it_looks_for():
    src = "a = x @ y\nb = np.dot(x, y)\nc = x.mean()\nd = np.linalg.norm(x)\ne = exact.mean(x)\nf = r.mean\n"
    assert [f.split(": ")[1] for f in offending_calls(src)] == ["@", ".dot", ".mean", ".linalg"]


def test_no_scoring_path_sums_through_blas_or_numpy_reductions():
    bad = {}
    for folder in SCORING_PATHS:
        for path in sorted((REPO / "vse" / folder).rglob("*.py")):
            found = offending_calls(path.read_text())
            if found:
                bad[path.relative_to(REPO).as_posix()] = found
    assert not bad, f"use vse.core.exact instead: {bad}"


def _pearson_item_by_item(x, y):
    """exact.pearson as it was written first, one Python float at a time: the bits the vectorised one must keep."""
    a, b = [float(v) for v in x], [float(v) for v in y]
    if len(a) < 2 or min(a) == max(a) or min(b) == max(b):
        return None

    def centred(v):
        peak = max(abs(t) for t in v)
        u = [t / peak for t in v]
        m = math.fsum(u) / len(u)
        return [t - m for t in u]

    ca, cb = centred(a), centred(b)
    denom = math.sqrt(math.fsum(p * p for p in ca) * math.fsum(q * q for q in cb))
    if not denom > 0:
        return None
    return math.fsum(p * q for p, q in zip(ca, cb, strict=True)) / denom


@given(pairs(min_size=2))
def test_pearson_keeps_the_bits_of_the_item_by_item_loop(ab):
    a, b = ab
    assert exact.pearson(a, b) == _pearson_item_by_item(a, b)


def test_pearson_keeps_the_bits_on_binary_and_sparse_vectors():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = (rng.random(5_000) < 0.01).astype(float)
        b = np.minimum(a + (rng.random(5_000) < 0.01), 1.0)
        assert exact.pearson(a, b) == _pearson_item_by_item(a, b)


two_values = st.tuples(
    st.one_of(st.sampled_from([0.0, -0.0, 1.0, 10.0, -1.0, 0.1, 1e-300, 1e300]), finite),
    st.one_of(st.sampled_from([0.0, -0.0, 1.0, 10.0, -1.0, 0.3, 5e-324, -1e300]), finite),
).filter(lambda v: v[0] != v[1])


@st.composite
def two_valued_pair(draw):
    """Two vectors of 256+ items that take two values each (a concept's labels against a binary unit's values):
    the counted path of `exact.pearson`, with a few of one value or many, and the pattern shared or not."""
    n = draw(st.integers(256, 3_000))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out = []
    for values in (draw(two_values), draw(two_values)):
        share = draw(st.sampled_from([1 / n, 0.001, 0.01, 0.1, 0.5, 0.9, 1 - 1 / n]))
        high = rng.random(n) < share
        high[rng.integers(n)] = True
        high[rng.integers(n)] = False  # both values present (or one, rarely: a constant vector is None)
        out.append(np.where(high, values[1], values[0]))
    if draw(st.booleans()):
        out[1] = np.where(out[0] == out[0][0], out[1][0], out[1][1])  # the same pattern: r = +-1
    return out[0], out[1]


@given(two_valued_pair())
def test_pearson_of_two_valued_vectors_counts_them_and_keeps_the_bits(ab):
    a, b = ab
    assert exact._two_valued(a) is not None or a.min() == a.max()
    got = exact.pearson(a, b)
    assert repr(got) == repr(_pearson_item_by_item(a, b))  # repr: the same bits, a zero's sign included
    if got is not None:
        assert repr(got) == repr(exact._pearson_general(a, b))


def test_the_counted_path_is_taken_only_for_two_values_and_enough_items():
    rng = np.random.default_rng(1)
    a = (rng.random(1_000) < 0.1).astype(float)
    assert exact._two_valued(a) is not None
    assert exact._two_valued(a + np.arange(1_000) * 1e-3) is None  # many values: the item-by-item path
    three = a.copy()
    three[0] = 0.5
    assert exact._two_valued(three) is None
    assert exact.pearson(three, a) == _pearson_item_by_item(three, a)
    assert exact.pearson(a[:100], a[:100][::-1]) == _pearson_item_by_item(a[:100], a[:100][::-1])
