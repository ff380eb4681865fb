"""The 90% interval's t quantiles are fixed numbers, checked against scipy."""

import pytest
from scipy import stats

from vse.core.stats import StopRule
from vse.core.tquantile import T_95, t_quantile


def test_the_table_matches_scipy():
    for df, q in enumerate(T_95, start=1):
        assert q == pytest.approx(float(stats.t.ppf(0.95, df)), rel=1e-13), df


def test_the_table_covers_every_pass_count_a_default_run_reaches():
    assert len(T_95) >= StopRule().max_runs
    assert t_quantile((1.0 + 0.90) / 2.0, 4) == T_95[3]  # the key Algorithm 1 looks up is exactly 0.95


def test_other_levels_fall_back_to_scipy():
    assert t_quantile(0.99, 5) == pytest.approx(3.3649, abs=1e-4)
    assert t_quantile(0.95, 500) == pytest.approx(float(stats.t.ppf(0.95, 500)))
