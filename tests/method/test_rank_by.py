"""The explainer's display ranks by the raw values: ties of the scaled integers no
longer fall back to the item index."""

import numpy as np

from vse.core.target import Target
from vse.method.explain import ExplainConfig, shown_indices


def _target(raw):
    return Target("m/l/0", "weight-label", tuple(f"c{i}" for i in range(len(raw))), np.asarray(raw, dtype=float))


def test_raw_ranking_breaks_scaled_ties_by_value_not_index():
    # 0.96 .. 0.99 all scale to 10 on 0..10; by raw value the strongest is the last item.
    t = _target([0.96, 0.97, 0.98, 0.99, 1.0, 0.0])
    assert len(set(t.values[:5].tolist())) == 1
    raw = shown_indices(t, ExplainConfig(n_pairs=2))
    scaled = shown_indices(t, ExplainConfig(n_pairs=2, rank_by="scaled"))
    assert raw.tolist() == [3, 4]  # ascending: strongest last
    assert sorted(scaled.tolist()) == [0, 1]  # the tie broken by index: the weakest of the five


def test_heldout_display_uses_even_raw_ranks():
    t = _target([0.96, 0.97, 0.98, 0.99, 1.0, 0.0])
    shown = shown_indices(t, ExplainConfig(n_pairs=2, shown="heldout"))
    assert shown.tolist() == [2, 4]  # raw ranks 0 and 2: items 4 and 2


def test_negative_polarity_ranks_the_most_negative_first():
    t = Target("m/l/0", "weight-label", ("a", "b", "c"), np.array([-0.5, -0.9, 0.3]), "negative")
    assert shown_indices(t, ExplainConfig(n_pairs=1)).tolist() == [1]


def test_unknown_rank_by_is_refused():
    import pytest

    with pytest.raises(ValueError, match="rank_by"):
        ExplainConfig(rank_by="index")
