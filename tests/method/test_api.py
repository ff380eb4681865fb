"""The Python API's contracts that need no LLM: the CLIP-Dissect baseline, argument checks, records.

Every LLM here is a client that fails the test on any call, so a test that passes proves the path
made no request.
"""

import json
import math

import numpy as np
import pytest

from vse import LLM, explain_neuron, score_explanation
from vse.core.target import POLARITIES
from vse.core.vocab import TARGET_KINDS
from vse.method.pipeline import METHODS
from vse.method.records import ExplanationRecord, Provenance, ScoreRecord, prompts_hash
from vse.method.score import ScoreConfig
from vse.method.simulators.embedding import ENCODER, EmbeddingStore
from vse.vision import fixtures

from ..llm.fakes import ScriptedClient

NEURON = "efficientnet_lite0/_conv_head/2"


def llm(api="completions"):
    """An LLM whose client must not be used: any request fails the test (a script-less ScriptedClient)."""
    return LLM(ScriptedClient(), api, reported_model="fake-model")


def test_clip_dissect_returns_the_fixture_label_without_a_call():
    label = {d["unit"]: d["label"] for d in fixtures.load_dissect("_conv_head")}[2]
    [rec] = explain_neuron(NEURON, "clip-dissect", llm=llm())
    assert rec.explanation == label
    assert (rec.neuron, rec.method, rec.polarity) == (NEURON, "clip-dissect", "positive")
    # No sampling and no cost: the baseline is read, not generated.
    assert rec.seed is None and rec.calls == 0 and rec.prompt_tokens == 0 and rec.completion_tokens == 0
    assert rec.provenance.llm == "fake-model" and rec.provenance.fewshot == ()
    assert rec.provenance.prompts_sha256 == prompts_hash()


def test_clip_dissect_labels_differ_per_unit():
    # Guards against returning one fixed string: two units with different fixture labels.
    labels = {d["unit"]: d["label"] for d in fixtures.load_dissect("_conv_head")}
    a, b = next((u, v) for u in labels for v in labels if labels[u] != labels[v])
    [ra] = explain_neuron(f"efficientnet_lite0/_conv_head/{a}", "clip-dissect", llm=llm())
    [rb] = explain_neuron(f"efficientnet_lite0/_conv_head/{b}", "clip-dissect", llm=llm())
    assert (ra.explanation, rb.explanation) == (labels[a], labels[b])


def test_unknown_method_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown method 'clip'") as err:
        explain_neuron(NEURON, "clip", llm=llm())
    for m in METHODS:
        assert m in str(err.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: explain_neuron(NEURON, "clip-dissect", llm=llm(), polarity="up"),
        lambda: score_explanation(NEURON, "dogs", "weight-label", llm=llm(), polarity="up"),
    ],
)
def test_unknown_polarity_names_the_allowed_ones(call):
    with pytest.raises(ValueError, match="polarity 'up' is not one of") as err:
        call()
    for p in POLARITIES:
        assert p in str(err.value)


def test_unknown_target_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown target 'weight-explanation'") as err:
        score_explanation(NEURON, "dogs", "weight-explanation", llm=llm())
    for t in TARGET_KINDS:
        assert t in str(err.value)


def test_malformed_neuron_id_is_refused():
    with pytest.raises(ValueError, match="MODEL/LAYER/INDEX"):
        explain_neuron("efficientnet_lite0/_conv_head", "clip-dissect", llm=llm())


# ----------------------------------------------------------------------------- records


PROV = Provenance(
    llm="qwen.gguf",
    api="chat",
    llm_file_sha256="ab" * 32,
    server="llama-cpp-python",
    prompts_sha256="0123456789abcdef",
    fewshot=("m/l/1", "m/l/2"),
    seed=7,
    simulator="one",
    protocol="uniform",
)


@pytest.mark.parametrize("seed", [None, 123456])
def test_explanation_record_round_trips_through_json(seed):
    rec = ExplanationRecord("m/l/5", "weight-label", "both", "dogs, and not cats", seed, 3, 1200, 40, PROV)
    line = json.dumps(rec.to_json())  # what a JSONL file holds
    back = ExplanationRecord.from_json(json.loads(line))
    assert back == rec
    # JSON turns tuples into lists; the record must come back with the tuple (hashable, equal).
    assert isinstance(back.provenance.fewshot, tuple) and isinstance(back.provenance, Provenance)


def test_explanation_record_from_json_ignores_unknown_fields():
    data = ExplanationRecord("m/l/5", "clip-dissect", "positive", "fisheries", None, 0, 0, 0, PROV).to_json()
    data["added_later"] = 1
    assert ExplanationRecord.from_json(data).explanation == "fisheries"
    # from_json must not modify its input (a caller may reuse the dict).
    assert "provenance" in data and isinstance(data["provenance"]["fewshot"], tuple)


def test_clip_dissect_record_round_trips():
    [rec] = explain_neuron(NEURON, "clip-dissect", llm=llm())
    assert ExplanationRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec


def _letters(texts):
    # A stand-in encoder (no sentence-transformers): a text's vector counts a few letters.
    return np.array([[t.count(c) + 0.1 for c in "aeiost"] for t in texts], dtype=np.float32)


def test_default_config_scores_with_an_embedding_store_and_no_server(tmp_path):
    store = EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters)
    rec = score_explanation(NEURON, "dogs", "weight-label", llm=LLM.embedding_only(store), progress=False)
    # The defaults `vse score` uses: the embedding simulator over the recall-free items, one exact pass.
    assert (rec.provenance.simulator, rec.provenance.protocol) == ("embedding", "recall-free")
    assert rec.passes == 1 and rec.calls == 0 and math.isfinite(rec.mean)
    assert rec.provenance.llm == ENCODER


def test_default_config_without_an_embedding_store_says_how_to_open_one():
    with pytest.raises(ValueError, match="needs an embedding store.*open_embeddings"):
        score_explanation(NEURON, "dogs", "weight-label", llm=llm())


def test_an_embedding_only_llm_refuses_an_llm_simulator(tmp_path):
    store = EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters)
    with pytest.raises(ValueError, match="only carries an embedding store"):
        score_explanation(NEURON, "dogs", "weight-label", llm=LLM.embedding_only(store), config=ScoreConfig(mode="one"))


def test_a_score_record_round_trips_through_its_json_in_the_written_key_order(tmp_path):
    store = EmbeddingStore(tmp_path / "e.npz", record=True, encode=_letters)
    rec = score_explanation(NEURON, "dogs", "weight-label", llm=LLM.embedding_only(store), progress=False)
    data = json.loads(json.dumps(rec.to_json()))
    assert list(data)[:6] == ["neuron", "method", "explanation", "explanation_seed", "target", "polarity"]
    assert list(data)[-2:] == ["provenance", "details"]
    again = ScoreRecord.from_json(data)
    assert again == rec and again.to_json() == rec.to_json()
