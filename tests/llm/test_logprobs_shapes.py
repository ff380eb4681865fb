"""Every logprobs shape vse meets is read by one function (`vse.llm.client.parse_logprobs`), checked
against replies captured from the real servers (tests/llm/data/README.md): llama-cpp-python's legacy
lists of dicts, and llama.cpp's llama-server, which answers /v1/completions in the chat shape."""

from __future__ import annotations

import math
import random

import pytest

from vse.llm.client import ClientConfig, LLMClient, parse_logprobs
from vse.llm.errors import LLMResponseError
from vse.llm.server import MODEL_FILE, describe_server
from vse.method.simulators.numbers import expected_value, number_distribution

from .fakes import FakeSession, Sleeps, load_reply, make_response


def client(reply) -> LLMClient:
    return LLMClient(
        ClientConfig(base_url="http://127.0.0.1:8765/v1"),
        session=FakeSession(make_response(200, reply)),
        sleep=Sleeps(),
        rng=random.Random(0),
    )


def test_llama_server_completion_reply_reads_like_the_legacy_one():
    reply = load_reply("llama_server_completion_logprobs.json")
    content = reply["choices"][0]["logprobs"]["content"]
    assert "tokens" not in reply["choices"][0]["logprobs"]  # the chat shape on /v1/completions
    out = client(reply).complete("Count: 1, 2, 3,", max_tokens=3, logprobs=5)
    assert out.text == " 4," and [t.token for t in out.tokens] == [" ", "4", ","]
    assert [t.logprob for t in out.tokens] == [c["logprob"] for c in content]
    assert out.tokens[1].top == {e["token"]: e["logprob"] for e in content[1]["top_logprobs"]}
    assert len(out.tokens[1].top) == 5 and max(out.tokens[1].top, key=out.tokens[1].top.get) == "4"
    assert out.prompt_tokens is None and out.usage.prompt_tokens == 11 and out.usage.completion_tokens == 3


def test_both_completion_shapes_give_the_same_kind_of_tokens():
    legacy = load_reply("completion_logprobs.json")["choices"][0]["logprobs"]
    new = load_reply("llama_server_completion_logprobs.json")["choices"][0]["logprobs"]
    (old_tokens, old_offsets), (new_tokens, new_offsets) = parse_logprobs(legacy), parse_logprobs(new)
    assert old_offsets == legacy["text_offset"] and new_offsets == [None, None, None]
    # Same prompt, same model: the same three tokens; every top holds the chosen token.
    assert [t.token for t in old_tokens] == [t.token for t in new_tokens] == [" ", "4", ","]
    for tokens in (old_tokens, new_tokens):
        assert all(t.token in t.top and t.top[t.token] == t.logprob for t in tokens)
    # vse's number reader sees "4" as the likeliest number in both.
    assert [
        max(number_distribution(t.top), key=number_distribution(t.top).get) for t in (old_tokens[1], new_tokens[1])
    ] == [4, 4]
    assert parse_logprobs(None) == ([], []) and parse_logprobs({"content": []}) == ([], [])


def test_llama_server_chat_reply_with_end_of_text_among_the_alternatives():
    reply = load_reply("llama_server_chat_logprobs.json")
    out = client(reply).chat([{"role": "user", "content": "x"}], max_tokens=2, logprobs=True, top_logprobs=5)
    assert out.text == "10" and [t.token for t in out.tokens] == ["1", "0"]
    assert "" in out.tokens[1].top  # <|im_end|> (id 151645) arrives as an empty token string
    raw = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    probs = {int(e["token"]): math.exp(e["logprob"]) for e in raw}  # five digits: 1, 5, 8, 4, 6
    assert expected_value(number_distribution(out.tokens[0].top)) == pytest.approx(
        sum(v * p for v, p in probs.items()) / sum(probs.values())
    )


def test_llama_server_ignores_echo_and_the_client_says_so():
    reply = load_reply("llama_server_completion_echo_ignored.json")
    with pytest.raises(LLMResponseError, match="ignored the request field 'echo'"):
        client(reply).complete("The capital of France is", max_tokens=1, logprobs=3, echo=True)
    # Without echo the same reply is an ordinary completion.
    assert client(reply).complete("The capital of France is", max_tokens=1, logprobs=3).text == " Paris"


def test_llama_server_models_reply_names_the_server_for_provenance():
    entry = load_reply("llama_server_models.json")["data"][0]
    assert entry["id"] == MODEL_FILE and entry["meta"]["n_ctx"] == 4096
    name, slots = describe_server(entry)
    assert slots == 4
    assert name.startswith("llama.cpp llama-server 0c1e570 (") and name.endswith(
        "4 slots, context 16384 (4096 per slot)"
    )
