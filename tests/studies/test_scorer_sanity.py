"""The scorer-sanity study: its units follow its rule, its check reproduces NeuronEval's top-and-random failure,
and its committed table says what the defaults rely on."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

from vse.core.sanity import PASS_SHARE, SanityTest
from vse.core.vocab import Protocol
from vse.studies.registry import EXPERIMENTS
from vse.studies.scorer_sanity import Theory, groups, name_list, text_units, theory_rows

REPO = Path(__file__).resolve().parents[2]
STUDY = EXPERIMENTS["scorer-sanity"]
RESULTS = REPO / "results" / "scorer-sanity"


def test_the_groups_file_names_its_source_and_every_group_is_small_enough():
    data = json.loads((REPO / "vse" / "studies" / "data" / "imagenet_groups.json").read_text())
    assert "Neuron_Eval" in data["source"] and "imagenet_superclass_to_ids.json" in data["source"]
    assert all(2 <= len(g["classes"]) <= 340 for g in data["groups"].values())
    assert data["groups"]["dog"]["name"] == "dogs" and len(data["groups"]["dog"]["classes"]) == 118


def test_text_units_follow_the_rule():
    units = text_units(STUDY)
    assert len(units) >= STUDY.text_llm_units
    kept = groups()
    for u in units:
        group = kept[u.group]
        assert len(u.classes) == 4 and u.broad == group["name"]
        assert u.exact == name_list(list(u.classes)) and u.narrow == name_list(list(u.classes[:2]))


def test_the_check_works_top_and_random_fails_extra_labels_where_recall_free_passes():
    small = replace(STUDY, theory=(Theory(5_000, (0.01,)),), cases=30)
    rows = {(r.protocol, r.test): r.count for r in theory_rows(small)}
    assert rows[(Protocol.TOP_AND_RANDOM, SanityTest.EXTRA)].decrease_share < PASS_SHARE
    assert rows[(Protocol.TOP_AND_RANDOM, SanityTest.MISSING)].decrease_share >= PASS_SHARE
    for test in SanityTest:
        assert rows[(Protocol.RECALL_FREE, test)].decrease_share >= PASS_SHARE
        assert rows[(Protocol.ALL, test)].decrease_share >= PASS_SHARE


def _rates():
    with open(RESULTS / "decrease_rates.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_recorded_table_reproduces_neuroneval_s_failure_and_the_recommended_scorer_passes():
    rows = [r for r in _rates() if r["setting"] == "theoretical" and r["n"] == str(STUDY.theory[0].n)]
    share = {(r["protocol"], float(r["frequency"]), r["test"]): float(r["decrease_share"]) for r in rows}
    for f in (0.01, 0.001):
        assert share[(Protocol.TOP_AND_RANDOM, f, SanityTest.EXTRA)] < PASS_SHARE
    for f in (0.1, 0.01, 0.001):
        for test in SanityTest:
            assert share[(Protocol.RECALL_FREE, f, test)] >= PASS_SHARE


def test_the_meta_auprc_scores_are_score_explanation_s_bit_for_bit():
    # The Meta-AUPRC matrix scores through `embedding_scorer` (the Oracle with the cosines as its concept);
    # it must be the embedding simulator's score_explanation, the same bits, on every protocol.
    import numpy as np

    from vse.core.protocols import ranks
    from vse.core.target import neuron_id
    from vse.core.vocab import Kind, Mode
    from vse.data.loader import draw_neurons, load_target
    from vse.method.llm import LLM
    from vse.method.score import ScoreConfig
    from vse.method.simulators.embedding import EmbeddingStore
    from vse.studies.scorer_sanity import _score, embedding_scorer

    store = EmbeddingStore(REPO / "cassettes" / "scorer-sanity" / "embeddings.npz")
    units = draw_neurons(STUDY.model, STUDY.layer, STUDY.meta_units, STUDY.neuron_seed + 1)[:2]
    neurons = [neuron_id(STUDY.model, STUDY.layer, u) for u in units]
    targets = [load_target(n, Kind.WEIGHT_LABEL) for n in neurons]
    texts = [name_list([t.texts[int(i)] for i in ranks(t.strength)[:4]]) for t in targets]
    cosines: dict = {}
    for protocol in Protocol:
        config = ScoreConfig(mode=Mode.EMBEDDING, protocol=protocol)
        for neuron, target in zip(neurons, targets, strict=True):
            score = embedding_scorer(store, target, config, cosines)
            for text in texts:
                want = _score(neuron, text, LLM.embedding_only(store), config, None, STUDY.seed)
                assert repr(score(text, STUDY.seed)) == repr(want)
                assert want is None or np.isfinite(want)


def test_the_text_level_embedding_scores_on_the_llm_s_item_sets_are_score_explanation_s():
    # The same check where a universe limits the items (the LLM's recall-free pool) and the passes are fixed.
    from vse.core.target import neuron_id
    from vse.core.vocab import Kind, Mode
    from vse.data.loader import load_target
    from vse.method.llm import LLM
    from vse.method.score import ScoreConfig
    from vse.method.simulators.embedding import EmbeddingStore
    from vse.studies.scorer_sanity import _fields, _score, embedding_scorer, llm_configs, llm_pool

    store = EmbeddingStore(REPO / "cassettes" / "scorer-sanity" / "embeddings.npz")
    unit = text_units(STUDY)[0]
    neuron = neuron_id(STUDY.model, STUDY.layer, unit.unit)
    target = load_target(neuron, Kind.WEIGHT_LABEL)
    pool = llm_pool(STUDY, target)
    for config in llm_configs(STUDY).values():
        universe = pool if config.protocol == Protocol.RECALL_FREE else None
        emb = ScoreConfig(**{**_fields(config), "mode": Mode.EMBEDDING})
        score = embedding_scorer(store, target, emb, None, universe)
        for text in unit.explanations().values():
            want = _score(neuron, text, LLM.embedding_only(store), emb, universe, STUDY.seed)
            assert want is not None and repr(score(text, STUDY.seed)) == repr(want)
