"""The scoring loop with a scripted client: Algorithm 1's plumbing, not an LLM's quality."""

import functools
import math

import numpy as np
import pytest

from vse.core.stats import StopRule
from vse.core.target import Target
from vse.core.vocab import Mode, Protocol, Unscorability
from vse.llm.client import Completion, TokenLogprob, Usage
from vse.method.explain import ExplainConfig, FewShotNeuron, explain
from vse.method.score import ScoreConfig, Unscorable, draw_items, score_target

from ..llm.fakes import ScriptedClient, one_token

# These tests drive the paper's Algorithm 1 (one item per call, uniform passes), not the default simulator.
PaperConfig = functools.partial(ScoreConfig, mode=Mode.ONE, protocol=Protocol.UNIFORM)

N = 200
RAW = np.where(np.arange(N) % 3 == 0, np.linspace(0.0, 1.0, N), -0.1)
TARGET = Target("m/l/5", "weight-label", tuple(f"class {i}" for i in range(N)), RAW)
FEW = [
    FewShotNeuron(
        Target("m/l/1", "weight-label", tuple(f"class {i}" for i in range(N)), RAW[::-1].copy()), "reversed things"
    )
]
TRUE = {f"class {i}": int(v) for i, v in enumerate(TARGET.values)}


def oracle(f):
    """A client that answers a one-item prompt with a number derived from the item's true value."""
    last = None

    def answer(prompt, kw):
        nonlocal last
        if prompt.endswith("\t1"):  # follow-up: is it 10?
            top = {"0": 0.0} if last == 10 else {"\n": 0.0}
        else:
            item = prompt.rsplit("\n", 1)[1].rstrip("\t")
            last = f(TRUE[item])
            top = {str(last)[0]: 0.0}
        return one_token(top)

    return ScriptedClient(answer)


def test_perfect_simulator_scores_100_and_stops_at_the_minimum():
    client = oracle(lambda v: v)
    r = score_target(
        client, "x", TARGET, FEW, PaperConfig(n_items=30, n_fewshot_pairs=10, split_ten=True), seed=0, progress=False
    )
    assert r.passes == 3 and not r.hit_cap
    assert r.scores == [100.0, 100.0, 100.0] and r.mean == 100.0
    assert r.accuracy == 1.0 and r.mse == pytest.approx(0.0) and r.mae == pytest.approx(0.0)
    assert r.calls == client.calls


def test_inverted_simulator_scores_minus_100():
    r = score_target(
        oracle(lambda v: 10 - v),
        "x",
        TARGET,
        FEW,
        PaperConfig(n_items=30, n_fewshot_pairs=10, split_ten=True),
        seed=0,
        progress=False,
    )
    assert r.mean == pytest.approx(-100.0)


def test_noisy_simulator_hits_the_cap_and_says_so():
    rng = np.random.default_rng(1)
    r = score_target(
        oracle(lambda v: int(rng.integers(0, 10))),
        "x",
        TARGET,
        FEW,
        PaperConfig(n_items=10, n_fewshot_pairs=5, stop=StopRule(max_runs=4)),
        seed=0,
        progress=False,
    )
    assert r.passes == 4 and r.hit_cap


def test_failed_passes_are_recorded_not_dropped():
    no_numbers = ScriptedClient(
        lambda p, kw: Completion("u", [TokenLogprob("unk", 0.0, {"unk": 0.0})], Usage(), "length")
    )

    with pytest.raises(Exception, match="simulation passes failed"):
        score_target(
            no_numbers,
            "x",
            TARGET,
            FEW,
            PaperConfig(n_items=10, n_fewshot_pairs=5, max_failed_passes=1),
            seed=0,
            progress=False,
        )


def test_passes_are_reproducible_from_the_seed():
    a = score_target(
        oracle(lambda v: v // 2), "x", TARGET, FEW, PaperConfig(n_items=20, n_fewshot_pairs=10), seed=7, progress=False
    )
    b = score_target(
        oracle(lambda v: v // 2), "x", TARGET, FEW, PaperConfig(n_items=20, n_fewshot_pairs=10), seed=7, progress=False
    )
    assert [p.items for p in a.details] == [p.items for p in b.details]
    c = score_target(
        oracle(lambda v: v // 2), "x", TARGET, FEW, PaperConfig(n_items=20, n_fewshot_pairs=10), seed=8, progress=False
    )
    assert [p.items for p in a.details] != [p.items for p in c.details]


def test_constant_subsets_are_redrawn():
    raw = np.zeros(100)
    raw[0] = 1.0
    t = Target("m/l/2", "weight-label", tuple(map(str, range(100))), raw)
    items, redraws = draw_items(t, PaperConfig(n_items=10), np.random.default_rng(0))
    assert 0 in items and redraws > 0
    with pytest.raises(Unscorable, match=r"all 2 items have the same value \(0\): the unit is dead") as err:
        draw_items(
            Target("m/l/3", "weight-label", ("a", "b"), np.zeros(2)), PaperConfig(n_items=2), np.random.default_rng(0)
        )
    assert err.value.why == Unscorability.CONSTANT


def test_explain_retries_empty_replies_with_new_seeds():
    client = ScriptedClient(Completion(text, [], Usage(1, 1), "stop") for text in ["", " insects in grass.\n"])
    e = explain(client, TARGET, FEW, ExplainConfig(), seed=3)
    seen = [kw["seed"] for kw in client.fields]
    assert e.text == "insects in grass" and e.calls == 2 and seen == [3, 1003]
    assert e.usage == Usage(2, 2)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mode"):
        PaperConfig(mode="telepathy")
    with pytest.raises(ValueError):
        PaperConfig(fewshot_strategy="best")
    assert math.isfinite(StopRule().half_width)


def test_the_store_predicts_each_item_once_per_explanation():
    # Fixed few-shot context: a second scoring of the same explanation reads the store, no call.
    from vse.method.prediction_store import PredictionStore

    store = PredictionStore()
    client = oracle(lambda v: v)
    config = PaperConfig(n_items=30, n_fewshot_pairs=10, split_ten=True)
    first = score_target(client, "x", TARGET, FEW, config, seed=0, store=store, progress=False)
    calls = client.calls
    again = score_target(client, "x", TARGET, FEW, config, seed=0, store=store, progress=False)
    assert calls == first.calls > 0 and client.calls == calls and again.calls == 0
    assert again.scores == first.scores


def test_per_pass_fewshot_draws_change_the_prompt_prefix():
    def prefixes(client):
        return {prompt.rsplit("Neuron X", 1)[0] for prompt in client.prompts}

    spy = oracle(lambda v: v)
    score_target(
        spy,
        "x",
        TARGET,
        FEW,
        PaperConfig(n_items=10, n_fewshot_pairs=5, fewshot_draw="per-pass", stop=StopRule(max_runs=3)),
        seed=0,
        progress=False,
    )
    assert len(prefixes(spy)) == 3
    spy = oracle(lambda v: v)
    score_target(
        spy,
        "x",
        TARGET,
        FEW,
        PaperConfig(n_items=10, n_fewshot_pairs=5, stop=StopRule(max_runs=3)),
        seed=0,
        progress=False,
    )
    assert len(prefixes(spy)) == 1


def test_prior_correction_subtracts_the_neutral_prediction():
    # A simulator that predicts the truth plus a large item-name bias: the bias cancels.
    def biased(prompt, kw):
        item = prompt.rsplit("\n", 1)[1].rstrip("\t")
        bias = int(item.split()[1]) % 5
        value = bias if "nothing in particular" in prompt else min(TRUE[item] // 2 + bias, 9)
        return one_token({str(value): 0.0})

    plain = score_target(
        ScriptedClient(biased), "x", TARGET, FEW, PaperConfig(n_items=40, n_fewshot_pairs=5), seed=0, progress=False
    )
    corrected = score_target(
        ScriptedClient(biased),
        "x",
        TARGET,
        FEW,
        PaperConfig(n_items=40, n_fewshot_pairs=5, prior_corrected=True),
        seed=0,
        progress=False,
    )
    assert corrected.mean > plain.mean and corrected.mean > 90
