"""Explanations cut off by the token budget: marked, trimmed to a sentence end in new runs, and the recorded
experiments still send their recorded requests (60 tokens, untrimmed)."""

from __future__ import annotations

import json

import pytest
import requests

from vse import LLM, explain_neuron
from vse.llm.client import ClientConfig, LLMClient
from vse.method.explain import NEW_MAX_TOKENS, ExplainConfig, trim_to_sentence
from vse.method.records import ExplanationRecord

NEURON = "efficientnet_lite0/_conv_head/414"


def test_trim_to_sentence():
    assert trim_to_sentence("dogs and cats. It also finds birds and") == "dogs and cats."
    assert trim_to_sentence("dogs! Or cats? Maybe the") == "dogs! Or cats?"
    assert trim_to_sentence("tools such as a 3.5 mm jack and") is None  # "3.5" is no sentence end
    assert trim_to_sentence("dogs and cats") is None


def _serve(monkeypatch, text: str, finish: str) -> list[dict]:
    seen = []

    def post(self, url, data=None, headers=None, timeout=None, **kw):
        body = json.loads(data)
        seen.append(body)
        resp = requests.Response()
        resp.status_code, resp.url, resp.encoding = 200, url, "utf-8"
        resp.headers["Content-Type"] = "application/json"
        resp._content = json.dumps(
            {
                "choices": [{"text": text, "index": 0, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": 700, "completion_tokens": 60, "total_tokens": 760},
            }
        ).encode()
        return resp

    def get(self, url, timeout=None, **kw):
        resp = requests.Response()
        resp.status_code, resp.url, resp._content = 200, url, b'{"data": [{"id": "scripted"}]}'
        return resp

    monkeypatch.setattr(requests.Session, "post", post)
    monkeypatch.setattr(requests.Session, "get", get)
    return seen


@pytest.fixture
def llm():
    return LLM.from_client(LLMClient(ClientConfig(base_url="http://llm.test/v1", max_retries=0)))


def test_a_new_run_gets_the_new_budget_and_a_cut_reply_is_trimmed_and_marked(monkeypatch, llm):
    seen = _serve(monkeypatch, " hats and caps. It also responds to things that are worn on the", "length")
    [rec] = explain_neuron(NEURON, "weight-label", llm=llm)
    assert seen[0]["max_tokens"] == NEW_MAX_TOKENS == 120
    assert (rec.explanation, rec.cut) == ("hats and caps.", "trimmed")
    assert rec.to_json()["cut"] == "trimmed"


def test_a_pinned_config_sends_its_budget_and_only_marks_the_cut(monkeypatch, llm):
    seen = _serve(monkeypatch, " hats and caps. It also responds to things that are worn on the", "length")
    [rec] = explain_neuron(NEURON, "weight-label", llm=llm, config=ExplainConfig())
    assert seen[0]["max_tokens"] == 60  # what the recorded experiments sent: their cassettes still match
    assert (
        rec.explanation == "hats and caps. It also responds to things that are worn on the" and rec.cut == "unfinished"
    )


def test_a_reply_that_ends_on_its_own_has_no_cut_in_its_json(monkeypatch, llm):
    _serve(monkeypatch, " hats and caps", "stop")
    [rec] = explain_neuron(NEURON, "weight-label", llm=llm)
    assert rec.cut == "" and "cut" not in rec.to_json()  # recorded results without a cut keep their bytes
    assert ExplanationRecord.from_json(rec.to_json()) == rec
