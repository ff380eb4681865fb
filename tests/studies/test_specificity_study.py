"""The specificity study (issue 32): its units are new, its configurations are what it recorded, and its rule
picks what the module doc says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vse.core.vocab import Display, Kind, Pick
from vse.data.loader import excluded_units
from vse.studies.defaults_study import USED_UNITS
from vse.studies.registry import EXPERIMENTS
from vse.studies.specificity_study import CONFIGS, DEFAULTS_UNITS, Config, Row, SpecificityStudy, verdict

STUDY = SpecificityStudy()


def test_the_defaults_studys_units_are_its_draw():
    defaults = EXPERIMENTS["defaults-study"]
    assert {layer: tuple(defaults.units(layer, n)) for layer, n in defaults.layers} == dict(DEFAULTS_UNITS)


def test_the_units_are_new():
    """Never a few-shot or development unit, nor one used before (the defaults study's own units included)."""
    assert isinstance(STUDY, SpecificityStudy)
    excluded = dict(STUDY.exclude)
    for layer, n in STUDY.layers:
        used = set(dict(USED_UNITS)[layer]) | set(dict(DEFAULTS_UNITS)[layer])
        assert used <= set(excluded[layer])
        units = STUDY.units(layer, n)
        assert len(set(units)) == n
        assert not set(units) & (used | excluded_units(STUDY.model, layer))
    assert [n for _, n in STUDY.layers] == [32, 16] and STUDY.layers[0][0] == "_conv_head"


def test_todays_default_is_the_baseline_and_every_config_uses_recorded_candidates():
    assert STUDY.configs[0] == Config("top-4", (Display.TOP,), 4, Pick.HELD_IN)
    assert len({c.name for c in STUDY.configs}) == len(STUDY.configs)
    with pytest.raises(ValueError, match="not among the recorded candidates"):
        replace(STUDY, configs=(*CONFIGS, Config("top-8", (Display.TOP,), 8, Pick.HELD_IN)))


def _row(layer: str, target: str, config: str, rank1: int, mean_rank: float, p: float = 1e-6) -> Row:
    return Row(
        layer=layer, target=target, config=config, n_neurons=32, n_compared=32, matched_mean=0.0,
        mismatched_mean=0.0, wins=0, rank1=rank1, mean_rank=mean_rank, p_value=p, p_wilcoxon=p,
        meta_auprc=0.0, meta_auprc_floor=0.0, meta_auprc_hard=0.0,
        calls_per_unit=4.0, prompt_tokens_per_unit=0.0, completion_tokens_per_unit=0.0,
    )  # fmt: skip


CELLS = [(lay, t) for lay in ("_conv_head", "_blocks.15") for t in (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION)]


def _rows(head: dict[str, tuple[int, float, float]], elsewhere: dict[str, float]) -> list[Row]:
    rows = []
    for layer, target in CELLS:
        for c in STUDY.configs:
            if (layer, target) == ("_conv_head", Kind.WEIGHT_LABEL):
                rank1, mean_rank, p = head.get(c.name, (0, 10.0, 0.5))
                rows.append(_row(layer, target, c.name, rank1, mean_rank, p))
            else:
                rows.append(_row(layer, target, c.name, 0, elsewhere.get(c.name, 6.0)))
    return rows


def test_the_rule_takes_the_most_rank1_and_needs_the_goal_and_no_worse_elsewhere():
    head = {"top-4": (3, 9.0, 1e-3), "pooled-4+4": (17, 3.0, 1e-6), "pooled-2+2": (17, 3.5, 1e-6)}
    assert verdict(_rows(head, {}), STUDY) == ("pooled-4+4", True)
    # worse than today's elsewhere: not adopted
    assert verdict(_rows(head, {"pooled-4+4": 6.5}), STUDY) == ("pooled-4+4", False)
    # below the goal, or not significant: not adopted
    assert verdict(_rows({**head, "pooled-4+4": (15, 3.0, 1e-6), "pooled-2+2": (0, 9, 1)}, {}), STUDY)[1] is False
    assert verdict(_rows({**head, "pooled-4+4": (20, 3.0, 2e-4), "pooled-2+2": (0, 9, 1)}, {}), STUDY)[1] is False
    # equal rank1 and mean rank: the cheaper one
    head = {"pooled-4+4": (17, 3.0, 1e-6), "pooled-2+2": (17, 3.0, 1e-6)}
    assert verdict(_rows(head, {}), STUDY) == ("pooled-2+2", True)


def test_the_registry_records_this_design():
    """Registered once its cassettes are complete (docs/studies/specificity-study.md): the same design as here."""
    if STUDY.name in EXPERIMENTS:
        assert EXPERIMENTS[STUDY.name] == STUDY
