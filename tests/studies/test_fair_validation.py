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
