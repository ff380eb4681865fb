"""Live smoke test (`make smoke`, run by CI after the offline suite): the real local LLM server.

Keeps the recorded path honest: the same prompt builders, client and parsers that made the
cassettes must still work against a freshly started llama.cpp server. One explanation call
and one one-item simulation pass over a few classes; every reply has to parse.
"""

import numpy as np
import pytest

from vse.experiments import evaluation_units, fewshot_neurons, get_experiment, load_target
from vse.explain import ExplainConfig, explain
from vse.llm.client import ClientConfig, LLMClient
from vse.llm.server import LocalServer, assemble_model
from vse.score import SimulateConfig, draw_items, fewshot_examples, simulate_pass

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def client():
    with LocalServer(assemble_model(), port=0) as server:
        yield LLMClient(ClientConfig(base_url=server.base_url))


def test_explain_and_simulate_against_the_real_server(client):
    exp = get_experiment("weight-label-one-neuron")
    unit = evaluation_units(exp)[0]
    target = load_target(exp.model, exp.layer, unit, "weight-label")
    fewshot = fewshot_neurons(exp, "weight-label")

    explanation = explain(client, target, fewshot, ExplainConfig(), seed=0)
    assert explanation.text and "\n" not in explanation.text

    config = SimulateConfig(mode="one", n_items=5, n_fewshot_pairs=10)
    rng = np.random.default_rng(0)
    items, _ = draw_items(target, config.n_items, rng)
    sim = simulate_pass(client, explanation.text, target, fewshot_examples(fewshot, config, rng), [target.texts[i] for i in items], config, seed=0)
    assert len(sim.values) == 5
    assert all(0.0 <= v <= 10.0 for v in sim.values)
    assert client.usage.prompt_tokens > 0 and client.usage.completion_tokens > 0
