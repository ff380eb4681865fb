"""The prediction store, alone and as the one-item simulator uses it.

A stored prediction may only be reused when everything it depends on is the same: model, API,
the prompt prefix (instruction, few-shot examples, explanation) and the item. These tests count
the fake LLM's calls to show a hit costs nothing and that every changed ingredient misses.
"""

import math

import pytest

from vse.llm.client import Completion, TokenLogprob, Usage
from vse.method.prediction_store import PredictionStore
from vse.method.prompts import Example, Pair
from vse.method.simulators import OneItemSimulator, SimContext

from ..llm.fakes import ScriptedClient, last_line

EX = (Example("7", (Pair("beagle", 6), Pair("poodle", 10)), "dogs of many breeds"),)
CTX = SimContext("weight-label", EX, "insects")
TEXTS = ["kite", "snail", "lacewing"]
# The fake's answer per item: a spread distribution so the expected value is not an integer.
TOPS = {
    "kite": {"0": math.log(0.7), "3": math.log(0.2), "x": math.log(0.1)},
    "snail": {"8": math.log(0.5), "9": math.log(0.5)},
    "lacewing": {"6": 0.0},
}


def _reply(prompt, kw):
    top = TOPS[last_line(prompt).rstrip("\t")]
    best = max(top, key=top.get)
    return Completion(best, [TokenLogprob(best, top[best], dict(top))], Usage(10, 1), "length")


def fake_client(model="local"):
    """Answers one-item prompts (completions or chat) from the item; counts every call."""
    return ScriptedClient(_reply, model=model)


EXPECTED = [0.2 * 3 / 0.9, 8.5, 6.0]  # expected values over the digit mass only


# ----------------------------------------------------------------------------- the store alone


def test_store_get_put_and_counters():
    s = PredictionStore()
    assert s.get("p", "kite") is None and s.misses == 1 and s.hits == 0
    s.put("p", "kite", 3)
    assert s.get("p", "kite") == 3.0 and isinstance(s.get("p", "kite"), float)
    assert s.hits == 2 and s.misses == 1 and len(s) == 1
    # Another prefix or item is another key.
    assert s.get("q", "kite") is None and s.get("p", "kit") is None
    assert s.misses == 3


def test_store_keeps_zero():
    # 0 is the commonest prediction: it must read back as a hit, not as "missing".
    s = PredictionStore()
    s.put("p", "kite", 0.0)
    assert s.get("p", "kite") == 0.0 and s.hits == 1 and s.misses == 0


def test_store_key_does_not_confuse_prefix_and_item_boundaries():
    # ("ab", "c") and ("a", "bc") concatenate to the same text; the separator keeps them apart.
    assert PredictionStore.key("ab", "c") != PredictionStore.key("a", "bc")
    assert PredictionStore.key("p", "kite") == PredictionStore.key("p", "kite")


# ----------------------------------------------------------------------------- through the simulator


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_same_key_same_value_and_no_second_call(api):
    client, store, sim = fake_client(), PredictionStore(), OneItemSimulator(api)
    first = sim.predict(client, CTX, TEXTS, seed=0, store=store)
    assert first.values == pytest.approx(EXPECTED)
    assert client.calls == 3 and first.calls == 3 and len(store) == 3
    second = sim.predict(client, CTX, TEXTS[::-1], seed=1, store=store)
    # Served from the store: no LLM call, no cost, the very same values.
    assert client.calls == 3 and second.calls == 0 and second.usage == Usage()
    assert second.values == first.values[::-1]
    assert store.hits == 3


def test_without_a_store_every_call_goes_to_the_llm():
    client, sim = fake_client(), OneItemSimulator()
    sim.predict(client, CTX, TEXTS, seed=0)
    sim.predict(client, CTX, TEXTS, seed=0)
    assert client.calls == 6


def test_a_new_item_misses_but_the_old_ones_hit():
    client, store, sim = fake_client(), PredictionStore(), OneItemSimulator()
    sim.predict(client, CTX, ["kite"], seed=0, store=store)
    out = sim.predict(client, CTX, ["kite", "snail"], seed=0, store=store)
    assert client.calls == 2 and out.calls == 1


OTHER_EX = (Example("7", (Pair("beagle", 6), Pair("poodle", 9)), "dogs of many breeds"),)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda: (fake_client(), "completions", SimContext("weight-label", OTHER_EX, "insects")), id="few-shot value"
        ),
        pytest.param(
            lambda: (fake_client(), "completions", SimContext("weight-label", EX + OTHER_EX, "insects")),
            id="few-shot neurons",
        ),
        pytest.param(
            lambda: (fake_client(), "completions", SimContext("weight-label", EX, "insects and bugs")), id="explanation"
        ),
        pytest.param(
            lambda: (fake_client(), "completions", SimContext("weight-clip", EX, "insects")), id="kind wording"
        ),
        pytest.param(
            lambda: (fake_client(), "completions", SimContext("weight-label", EX, "insects", signed=True)), id="signed"
        ),
        pytest.param(lambda: (fake_client("other-model"), "completions", CTX), id="model"),
        pytest.param(lambda: (fake_client(), "chat", CTX), id="api"),
    ],
)
def test_a_changed_prefix_model_or_api_never_hits(change):
    store = PredictionStore()
    base = fake_client()
    OneItemSimulator("completions").predict(base, CTX, TEXTS, seed=0, store=store)
    assert base.calls == 3
    client, api, ctx = change()
    out = OneItemSimulator(api).predict(client, ctx, TEXTS, seed=0, store=store)
    # Every item is asked again: a prediction made under another prefix is another prediction.
    assert client.calls == 3 and out.calls == 3
    assert store.hits == 0 and len(store) == 6


def test_simulator_knobs_are_part_of_the_key():
    # ten_followup changes how a value is read, so its predictions must not be shared either.
    store, client = PredictionStore(), fake_client()
    OneItemSimulator(ten_followup=False).predict(client, CTX, TEXTS, seed=0, store=store)
    OneItemSimulator(ten_followup=True).predict(client, CTX, TEXTS, seed=0, store=store)
    assert store.hits == 0
