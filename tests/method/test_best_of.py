"""vse.method.best_of: the best of N is chosen on held-in items and reported on held-out ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vse.core.protocols import ranks
from vse.core.vocab import Unscorability
from vse.data.loader import load_target
from vse.method.best_of import best_of_n, split_unseen, unseen_items
from vse.method.llm import LLM
from vse.method.records import ExplanationRecord, Provenance
from vse.method.score import Unscorable
from vse.method.simulators.embedding import EmbeddingStore

NEURON = "efficientnet_lite0/_conv_head/2"
PROV = Provenance(llm="m", api="completions", llm_file_sha256=None, server=None, prompts_sha256="h", fewshot=(), seed=0)


def _letters(texts):
    # A stand-in encoder (no sentence-transformers): a text's vector counts a few letters.
    return np.array([[t.count(c) + 0.1 for c in "aeiost"] for t in texts], dtype=np.float32)


def record(text: str, seed: int, shown=(), method: str = "weight-label") -> ExplanationRecord:
    return ExplanationRecord(NEURON, method, "positive", text, seed, 1, 10, 5, PROV, shown=tuple(shown))


@given(st.lists(st.integers(0, 999), unique=True, max_size=200), st.integers(0, 2**31 - 1), st.integers(0, 2000))
def test_the_split_is_a_seeded_partition_into_halves(unseen, seed, unit):
    unseen = np.array(sorted(unseen), dtype=int)
    held_in, held_out = split_unseen(unseen, seed, unit)
    assert not set(held_in) & set(held_out)
    assert sorted([*held_in, *held_out]) == unseen.tolist()
    assert len(held_in) == len(unseen) // 2 and list(held_in) == sorted(held_in)
    again = split_unseen(unseen, seed, unit)
    assert again[0].tolist() == held_in.tolist() and again[1].tolist() == held_out.tolist()


def test_unseen_items_leave_out_exactly_what_the_records_say_was_shown():
    strength = np.arange(10, dtype=float)
    assert unseen_items(strength, [record("a", 1, shown=(2, 5))], "weight-label", 3).tolist() == [
        0,
        1,
        3,
        4,
        6,
        7,
        8,
        9,
    ]
    # An old record without `shown`: the recall-free rule (the n_shown strongest) stands in for it.
    assert unseen_items(strength, [record("a", 1)], "weight-label", 3).tolist() == list(range(7))
    # Explained from other pairs: none of these items was shown.
    assert (
        len(unseen_items(strength, [record("a", 1, shown=(2,), method="caption-activation")], "weight-label", 3)) == 10
    )


def test_the_best_candidate_is_chosen_on_held_in_items_and_reported_on_the_held_out_rest(tmp_path):
    target = load_target(NEURON, "weight-label", "positive")
    shown = sorted(ranks(target.strength)[:25].tolist())
    candidates = [record(t, k, shown) for k, t in enumerate(["dogs", "sea snakes and eels", "a tissue", "oil"])]
    llm = LLM.embedding_only(EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters))
    best = best_of_n(candidates, "weight-label", llm=llm, split_seed=3, progress=False)
    held_in = [c.held_in for c in best.candidates]
    assert best.chosen == int(np.argmax(held_in))
    assert best.record.explanation == candidates[best.chosen].explanation
    reported = set(best.record.details[0].items)
    assert len(reported) == best.held_out_items and best.held_in_items + best.held_out_items == 1000 - 25
    assert not reported & set(shown)
    held_in_items, held_out_items = split_unseen(unseen_items(target.strength, candidates, "weight-label", 25), 3, 2)
    assert reported == set(held_out_items.tolist())
    data = best.to_json()
    assert data["best_of"]["n"] == 4 and [c["held_in"] for c in data["best_of"]["candidates"]] == held_in
    assert data["mean"] == best.record.mean


def test_one_candidate_is_scored_on_every_unseen_item_and_mixed_neurons_are_refused(tmp_path):
    llm = LLM.embedding_only(EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters))
    one = best_of_n([record("dogs", 0, shown=(1, 2, 3))], "weight-label", llm=llm, progress=False)
    assert one.held_in_items == 0 and one.held_out_items == 997 and one.candidates[0].held_in is None
    assert len(one.record.details[0].items) == 997
    other = ExplanationRecord("efficientnet_lite0/_conv_head/3", "weight-label", "positive", "x", 0, 0, 0, 0, PROV)
    with pytest.raises(ValueError, match="one neuron"):
        best_of_n([record("dogs", 0), other], "weight-label", llm=llm, progress=False)


def test_too_few_unseen_items_to_split_is_one_clear_refusal(tmp_path):
    llm = LLM.embedding_only(EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters))
    unseen = ranks(load_target(NEURON, "weight-label").strength)[[0, 10, 500]].tolist()  # 3 different values
    almost_all = [i for i in range(1000) if i not in unseen]  # the explainer saw all but 3 classes
    with pytest.raises(Unscorable, match=r"only 3 of the 1000 items were not shown: too few to split.*--n 1") as err:
        best_of_n([record("dogs", 0, almost_all), record("cats", 1, almost_all)], "weight-label", llm=llm)
    assert err.value.why == Unscorability.SPLIT
