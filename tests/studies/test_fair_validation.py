"""vse.studies.fair_validation: every unit's fairly chosen explanation scored on every unit's held-out items."""

from __future__ import annotations

import json

import numpy as np

from vse.llm.client import Completion, Usage
from vse.method.llm import LLM
from vse.method.simulators.embedding import EmbeddingStore
from vse.studies.fair_validation import FairValidation, run_fair_validation, run_fair_validations

from ..llm.fakes import ScriptedClient


def _letters(texts):
    # A stand-in encoder (no sentence-transformers): a text's vector counts a few letters.
    return np.array([[t.count(c) + 0.1 for c in "aeiost"] for t in texts], dtype=np.float32)


def explainer(prompt, fields):
    # An "explanation" made of the end of the prompt: the unit's strongest pairs, so units differ.
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    pairs = text.rsplit("<end>", 1)[0][-80:].replace("\n", " ").strip()
    return Completion(f" things like {pairs}.", [], Usage(100, 20), "stop")


def test_units_are_explained_chosen_fairly_and_cross_scored_on_held_out_items(tmp_path):
    client = ScriptedClient(explainer)
    llm = LLM(client, embeddings=EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters))
    v = FairValidation("efficientnet_lite0", "_conv_head", (1, 2, 3), "weight-label", "weight-label", n=2)
    result = run_fair_validation(v, llm, progress=False)
    assert client.calls == 3 * 2  # explanations only: the embedding simulator calls no LLM
    assert result.scores.shape == (3, 3)
    for j, best in enumerate(result.best):
        assert result.scores[j, j] == best.record.mean
        assert best.held_in_items + best.held_out_items == 1000 - 25  # the 25 shown pairs left out
        assert set(best.record.details[0].items) == set(best.held_out.tolist())
    row = result.row
    assert row.n_neurons == 3 and row.method == "weight-label (best of 2)" and row.protocol == "recall-free"
    assert 1 <= row.mean_rank <= 3 and 0 <= row.wins <= 3
    data = result.to_json()
    assert data["units"] == [1, 2, 3] and len(data["best_of"]) == 3 and data["comparison"]["n_neurons"] == 3
    assert "| recall-free | weight-label | weight-label (best of 2) | 3 |" in result.table


def test_several_targets_share_one_explanation_per_unit_and_seed(tmp_path):
    # `vse validate --targets a,b`: each unit is explained once and its candidates scored on both targets;
    # explaining again per target sent (and recorded) every explanation request twice.
    client = ScriptedClient(explainer)
    llm = LLM(client, embeddings=EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters))
    targets = ("weight-label", "caption-activation")
    vs = [FairValidation("efficientnet_lite0", "_conv_head", (1, 2, 3), "weight-label", t, n=2) for t in targets]
    results = run_fair_validations(vs, llm, progress=False)
    sent = [json.dumps([prompt, fields], sort_keys=True) for _, prompt, fields in client.requests]
    assert len(sent) == 3 * 2 and len(set(sent)) == len(sent)  # each request once, none twice
    assert [r.validation.target for r in results] == list(targets)
    for a, b in zip(results[0].best, results[1].best, strict=True):
        assert [c.explanation for c in a.candidates] == [c.explanation for c in b.candidates]
        assert a.record.target == "weight-label" and b.record.target == "caption-activation"


def _sparse(monkeypatch, units, keep: int):
    """The fixtures' weight-label weights with ``units`` non-zero on their ``keep`` strongest classes only (fewer than
    the 25 the explainer is shown: every class it did not see is 0)."""
    from vse.data import loader

    real = loader._matrix

    def matrix(model, layer, kind):
        texts, raw = real(model, layer, kind)
        if kind == "weight-label":
            raw = raw.copy()
            for u in units:
                raw[u, np.argsort(-raw[u], kind="stable")[keep:]] = 0.0
        return texts, raw

    monkeypatch.setattr(loader, "_matrix", matrix)


def test_an_unscorable_unit_is_left_out_of_the_paired_test_and_said_why(tmp_path, monkeypatch):
    _sparse(monkeypatch, [4], keep=20)
    client = ScriptedClient(explainer)
    llm = LLM(client, embeddings=EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters))
    v = FairValidation("efficientnet_lite0", "_conv_head", (1, 4, 2, 3), "weight-label", "weight-label", n=2)
    result = run_fair_validation(v, llm, progress=False)
    assert result.units == [1, 2, 3] and result.scores.shape == (3, 3) and result.row.n_neurons == 3
    [(unit, reason)] = result.left_out
    assert unit == 4 and reason.startswith("all 975 items the explainer did not see have the same value (0); ")
    assert result.left_out_line() == (
        f"weight-label (best of 2) on weight-label: 1 unscorable unit(s) left out (unit 4: {reason})"
    )
    data = result.to_json()
    assert data["units"] == [1, 2, 3] and data["left_out"] == [{"unit": 4, "reason": reason}]
    whole = run_fair_validation(
        FairValidation("efficientnet_lite0", "_conv_head", (1, 2, 3), "weight-label", "weight-label", n=2), llm,
        progress=False,
    )  # fmt: skip
    assert whole.left_out == () and "left_out" not in whole.to_json() and whole.left_out_line() is None


def test_fewer_than_3_scorable_units_is_one_clear_refusal(tmp_path, monkeypatch):
    import pytest

    from vse.errors import UserError

    _sparse(monkeypatch, [2, 3], keep=20)
    llm = LLM(ScriptedClient(explainer), embeddings=EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters))
    v = FairValidation("efficientnet_lite0", "_conv_head", (1, 2, 3), "weight-label", "weight-label", n=2)
    with pytest.raises(UserError, match=r"only 1 of the 3 units can be scored \(2 unscorable, e.g. unit 2: all 975"):
        run_fair_validation(v, llm, progress=False)
