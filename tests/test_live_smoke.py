"""Live smoke test (`make smoke`, run by CI after the offline suite): the real local LLM server.

Keeps the recorded path honest: the same prompt builders, client and parsers that made the
cassettes must still work against a freshly started llama.cpp server, through both APIs. One
explanation and one short scoring run per API, on a dev neuron (never evaluated); every reply
has to parse.
"""

import pytest

from vse import LLM, Mode, Protocol, explain_neuron, score_explanation
from vse.core.stats import StopRule
from vse.llm.client import ClientConfig, LLMClient
from vse.llm.server import LocalServer, assemble_model
from vse.method.score import ScoreConfig

pytestmark = pytest.mark.live
NEURON = "efficientnet_lite0/_conv_head/903"  # a prompt-development unit


@pytest.fixture(scope="module")
def base_url():
    with LocalServer(assemble_model(), port=0) as server:
        yield server.base_url


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_explain_and_score_against_the_real_server(base_url, api):
    llm = LLM.from_client(LLMClient(ClientConfig(base_url=base_url)), api)
    assert llm.reported_model.endswith(".gguf") and llm.llm_file_sha256
    [rec] = explain_neuron(NEURON, "weight-label", llm=llm)
    assert rec.explanation and "\n" not in rec.explanation
    # The paper's LLM simulator (the default, embeddings, calls no server).
    config = ScoreConfig(
        mode=Mode.ONE, protocol=Protocol.UNIFORM, n_items=5, n_fewshot_pairs=5, stop=StopRule(min_runs=2, max_runs=2)
    )
    scored = score_explanation(NEURON, rec.explanation, "weight-label", llm=llm, config=config, progress=False)
    assert scored.passes == 2
    assert all(0.0 <= v <= 10.0 for p in scored.details for v in p.predicted)
    assert llm.client.usage.prompt_tokens > 0
