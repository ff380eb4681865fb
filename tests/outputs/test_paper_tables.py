"""vse.outputs.paper_tables: per-explanation scores, best of N, the method and neuron tables, CSV."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from vse.core.discrimination import ItemSets
from vse.outputs import paper_tables as pt


def row(unit, method, index, corr, target="weight-label", protocol="uniform", acc=0.5, mse_=1.0, mae_=1.0):
    return pt.ExplanationScore(
        unit, method, index, f"e{unit}{method}{index}", target, protocol, 30, corr, acc, mse_, mae_
    )


def test_score_rows_score_each_protocol_on_its_items():
    sets = ItemSets(
        uniform=np.array([0, 1, 2]),
        top_and_random=np.array([0, 1, 2, 3]),
        heldout=np.array([1, 2, 3]),
        held=np.array([3]),
        unseen_random=np.array([1, 2]),
        recall_free=np.array([0, 1, 2]),
    )
    pred, true = [0.0, 1.0, 2.0, 0.0], [0, 1, 2, 9]
    uni, held = pt.score_rows(7, "weight-label", 1, "x", "weight-label", pred, true, sets)
    assert (uni.protocol, uni.n_items, uni.corr, uni.acc, uni.mse, uni.mae) == (
        "uniform",
        3,
        pytest.approx(100.0),
        1.0,
        0.0,
        0.0,
    )
    assert held.protocol == "top-and-random-heldout" and held.n_items == 3 and held.corr < 0
    assert held.mse == pytest.approx(81 / 3) and held.acc == pytest.approx(2 / 3)


def test_best_of_n_is_per_neuron_and_column_and_the_table_shows_best_and_mean():
    rows = [
        row(1, "wl", 0, 10.0),
        row(1, "wl", 1, 30.0),
        row(1, "wl", 2, -10.0),
        row(2, "wl", 0, 0.0),
        row(2, "wl", 1, 20.0),
        row(2, "wl", 2, 4.0),
        row(1, "clip", 0, 5.0),
        row(2, "clip", 0, 7.0),
        row(1, "wl", 0, 99.0, target="caption-activation"),
        row(2, "wl", 0, 1.0, target="caption-activation"),
    ]
    best = pt.best_of_n(rows)
    assert (
        best[(1, "wl", "weight-label", "uniform")].corr == 30.0
        and best[(2, "wl", "weight-label", "uniform")].corr == 20.0
    )
    cells = {(c.method, c.target): c for c in pt.method_cells(rows)}
    assert cells[("wl", "weight-label")].best == 25.0 and cells[("wl", "weight-label")].mean == pytest.approx(54 / 6)
    assert cells[("wl", "weight-label")].n_explanations == 3 and cells[("clip", "weight-label")].n_explanations == 1
    table = pt.method_table(rows, "uniform")
    assert table.splitlines()[0] == "| method | weight-label | caption-activation |"
    assert "| wl (best of 3) | 25.00 (9.00) | 50.00 (50.00) |" in table
    assert "| clip | 6.00 (6.00) | - |" in table


def test_neuron_table_has_the_papers_columns_and_average():
    rows = [
        row(5, "weight-label", 0, 10.0, acc=0.2, mse_=4.0, mae_=2.0),
        row(5, "weight-label", 1, 20.0, acc=0.4, mse_=2.0, mae_=1.0),
        row(9, "weight-label", 0, 40.0, acc=0.3, mse_=6.0, mae_=3.0),
    ]
    t = pt.neuron_table(rows, "weight-label", "weight-label").splitlines()
    assert t[0] == "| neuron | Corr. | Acc. | MSE | MAE |"
    assert t[2] == "| 5 | 20.00 | 40% | 2.00 | 1.00 |" and t[3] == "| 9 | 40.00 | 30% | 6.00 | 3.00 |"
    assert t[4] == "| Avg. | 30.00 | 35.00% | 4.00 | 2.00 |"
    assert pt.neuron_table(rows, "caption-activation", "weight-label") == ""


def test_csv_round_trips():
    rows = [row(1, "wl", 0, 12.345678), row(1, "wl", 1, -3.0)]
    back = list(csv.DictReader(io.StringIO(pt.rows_csv(rows))))
    assert [r["corr"] for r in back] == ["12.3457", "-3.0"] and back[0]["explanation"] == "e1wl0"
    cells = list(csv.DictReader(io.StringIO(pt.cells_csv(rows))))
    assert cells == [
        {
            "method": "wl",
            "target": "weight-label",
            "protocol": "uniform",
            "best": "12.3457",
            "mean": "4.6728",
            "n_neurons": "1",
            "n_explanations": "2",
        }
    ]
    assert pt.to_csv([]) == ""


def test_the_scores_figure_renders_and_is_deterministic():
    rows = [
        row(u, m, k, float(u + k), protocol=p)
        for u in (1, 2)
        for m in ("wl", "clip")
        for k in range(2)
        for p in ("uniform", "top-and-random-heldout")
    ]
    a = pt.render_explanation_scores(rows, "t")
    assert a.startswith(b"\x89PNG") and a == pt.render_explanation_scores(rows, "t")
