"""The defaults study: its units are new, its rule picks what the doc says, its numbers are the API's, and the
defaults (`vse.method.defaults`) are its recommended row."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from vse.core.vocab import Display, Kind
from vse.data.loader import excluded_units
from vse.method import defaults
from vse.method.best_of import best_of_n
from vse.method.llm import LLM
from vse.method.records import ExplanationRecord
from vse.method.score import ScoreConfig
from vse.method.simulators.embedding import EmbeddingStore
from vse.studies.defaults_study import DefaultsStudy, Row, recommend
from vse.studies.registry import EXPERIMENTS

REPO = Path(__file__).resolve().parents[2]
STUDY = EXPERIMENTS["defaults-study"]
RESULTS = REPO / "results" / "defaults-study"


def _row(layer: str, target: str, display: str, n: int, mean_rank: float, units: int = 9) -> Row:
    return Row(
        simulator="embedding", protocol="recall-free", target=target, layer=layer, display=display, n_candidates=n,
        n_neurons=units, n_compared=units, matched_mean=0.0, mismatched_mean=0.0, wins=0, rank1=0,
        mean_rank=mean_rank, p_value=1.0, p_wilcoxon=1.0, sensitivity=0.0, corr_with_neutral=0.0,
    )  # fmt: skip


def _cells(display: str, n: int, mean_rank: float) -> list[Row]:
    return [_row(lay, t, display, n, mean_rank) for lay in ("a", "b") for t in ("weight-label", "caption-activation")]


def test_the_rule_takes_the_better_display_then_the_smallest_n_near_the_best():
    rows = (
        _cells("top", 1, 4.0) + _cells("top", 2, 3.5) + _cells("top", 4, 3.0) + _cells("top", 8, 3.0)
        + _cells("heldout", 1, 3.0) + _cells("heldout", 2, 2.2) + _cells("heldout", 4, 2.1) + _cells("heldout", 8, 2.0)
    )  # fmt: skip
    # heldout separates better on average; its best is N=8 (separation 1/8), N=2 lies within 0.2/8 = 0.025 of it
    assert recommend(rows, tolerance=0.03) == ("heldout", 2)
    assert recommend(rows, tolerance=0.02) == ("heldout", 4)
    assert recommend(rows, tolerance=0.0) == ("heldout", 8)


def test_a_row_separation_is_its_normalised_mean_rank():
    assert _row("a", "t", "top", 1, 1.0).separation == 0.0
    assert _row("a", "t", "top", 1, 5.0).separation == 0.5  # chance, of 9
    assert _row("a", "t", "top", 1, 9.0).separation == 1.0


def test_best_of_more_than_the_candidates_is_refused():
    with pytest.raises(ValueError, match="best_of"):
        replace(STUDY, best_of=(1, 16))


def test_the_units_are_new():
    """Never a few-shot or development unit, nor one that any other recorded experiment explained."""
    assert isinstance(STUDY, DefaultsStudy)
    used: dict[str, set[int]] = {}
    # The experiments recorded before this study (the registry keeps them in the order they were added); later
    # studies avoid this study's units themselves (their own tests say so).
    earlier = list(EXPERIMENTS)[: list(EXPERIMENTS).index(STUDY.name)]
    for name in earlier:
        config = REPO / "results" / name / "config.json"
        if not config.exists():
            continue
        data = json.loads(config.read_text())
        layer = data["experiment"].get("layer")
        for u in data["units"]:
            lay, unit = (u.split("/")[1], int(u.split("/")[2])) if isinstance(u, str) else (layer, int(u))
            used.setdefault(lay, set()).add(unit)
    excluded = dict(STUDY.exclude)
    for layer, n in STUDY.layers:
        assert used.get(layer, set()) <= set(excluded[layer]), f"{layer}: a used unit is not excluded"
        units = STUDY.units(layer, n)
        assert len(set(units)) == n
        assert not set(units) & (set(excluded[layer]) | excluded_units(STUDY.model, layer))


def test_the_study_reports_what_best_of_n_through_the_api_reports():
    """One unit's best of 8 on Weight-Label, through `vse.method.best_of.best_of_n` with the default scorer
    on the study's own embeddings: the held-out score is the study's, to the last digit."""
    records = [ExplanationRecord.from_json(json.loads(x)) for x in (RESULTS / "explanations.jsonl").open()]
    neuron = records[0].neuron
    mine = [r for r in records if r.neuron == neuron and r.display == Display.HELDOUT]
    assert len(mine) == STUDY.n_candidates
    with open(RESULTS / "choices.csv", newline="") as f:
        [row] = [
            r
            for r in csv.DictReader(f)
            if (r["neuron"], r["target"], r["display"], r["n_candidates"])
            == (neuron, Kind.WEIGHT_LABEL, Display.HELDOUT, str(STUDY.n_candidates))
        ]
    store = EmbeddingStore(REPO / "cassettes" / STUDY.name / "embeddings.npz", record=False)
    best = best_of_n(mine, Kind.WEIGHT_LABEL, llm=LLM.embedding_only(store), config=ScoreConfig(), progress=False)
    assert best.chosen == int(row["chosen"])
    assert round(best.record.mean, 4) == float(row["held_out"])
    assert best.held_in_items == int(row["held_in_items"]) and best.held_out_items == int(row["held_out_items"])


def test_the_defaults_are_the_recommended_row():
    rows = json.loads((RESULTS / "summary.json").read_text())
    picked = {(r["display"], r["n_candidates"]) for r in rows if r["recommended"]}
    assert picked == {(defaults.DISPLAY.value, defaults.N_EXPLANATIONS)}
    display, n = picked.pop()
    # README's table of findings and the study's full text both say it.
    for page in (REPO / "README.md", REPO / "docs" / "studies" / "defaults-study.md"):
        assert f"display `{display}`, best of {n}" in page.read_text(), page.name
