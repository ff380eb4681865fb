"""vse.studies.strategy: items of a run, paired summaries, and a whole run through fakes (no LLM)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vse.core.protocols import heldout_shown, heldout_top
from vse.method.prediction_store import PredictionStore
from vse.studies import strategy as ss


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 10), min_size=60, max_size=200),
    st.integers(1, 5),
    st.integers(1, 30),
    st.integers(1, 10),
    st.integers(0, 2**32 - 1),
)
def test_run_items_hold_the_heldout_top_and_never_a_shown_item(values, n_held, n_random, n_shown, seed):
    v = np.array(values, dtype=float)
    items, rand = ss.run_items(v, n_held, n_random, n_shown, np.random.default_rng(seed))
    shown = set(heldout_shown(v, n_shown).tolist())
    held = set(heldout_top(v, n_held).tolist())
    assert held <= set(items.tolist())
    assert not shown & set(items.tolist())
    assert not held & set(rand.tolist())
    assert set(rand.tolist()) <= set(items.tolist()) and len(rand) == min(n_random, len(v) - len(shown | held))


def test_summary_rows_pair_each_run_with_the_baseline():
    study = ss.StrategyStudy(name="t", variants=(("a", ()), ("b", ())), n_runs=3)
    runs = [ss.RunScore("a", r, 10.0 + r, 0.0) for r in range(3)] + [
        ss.RunScore("b", r, 12.0 + r, 1.0) for r in range(3)
    ]
    rows = {(r["protocol"], r["variant"]): r for r in ss.summary_rows(study, runs)}
    b = rows[("top-and-random-heldout", "b")]
    assert (b["mean"], b["diff_vs_baseline"], b["diff_ci90"]) == (13.0, 2.0, 0.0)  # the same +2 in every run
    assert rows[("uniform", "b")]["diff_vs_baseline"] == 1.0 and rows[("uniform", "a")]["diff_ci90"] == 0.0
    assert "| uniform | b | 3 | 1.00 ± 0.00 | +1.00 ± 0.00 |" in ss.markdown(ss.summary_rows(study, runs))


@dataclass
class _Rec:
    explanation: str = "dogs"

    def to_json(self):
        return {"neuron": "x", "method": "weight-label", "explanation": self.explanation}


def test_a_run_scores_every_variant_on_the_same_items(monkeypatch):
    seen = []

    def predict_items(client, explanation, texts, *, kind, examples, config, store, in_flight):
        assert in_flight == 3  # the LLM's own
        seen.append((examples, tuple(texts)))
        return type("S", (), {"values": [float("dog" in t or "terrier" in t) * 5 for t in texts]})()

    monkeypatch.setattr("vse.method.predict.predict_items", predict_items)
    monkeypatch.setattr(ss, "explain_neuron", lambda *a, **k: [_Rec()])
    saved = []

    @contextlib.contextmanager
    def open_llm(stem):
        yield type(
            "L",
            (),
            {
                "api": "completions",
                "client": None,
                "store": PredictionStore(),
                "in_flight": 3,
                "checkpoint": staticmethod(lambda: saved.append(stem)),
            },
        )()

    study = ss.StrategyStudy(name="t", neuron_seed=5, n_runs=2, variants=ss.TABLE5[:2])
    out = ss.run_strategy_study(study, open_llm, progress=False)
    assert [(s.variant, s.run) for s in out.runs] == [
        ("Baseline (random)", 0),
        ("Baseline (random)", 1),
        ("Highest 50/50", 0),
        ("Highest 50/50", 1),
    ]
    assert seen[0][1] == seen[2][1] and seen[1][1] == seen[3][1]  # paired items
    assert seen[0][0] != seen[2][0]  # the strategies show different few-shot pairs
    assert saved == ["baseline-random"] * 2 + ["highest-50-50"] * 2
    assert ss.render_runs(study, out.runs).startswith(b"\x89PNG")
