"""LLMClient: request bytes, retries/backoff, errors, key handling, usage, logprob parsing."""

from __future__ import annotations

import json
import math
import random

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from vse.llm.client import ClientConfig, Completion, LLMClient, TokenLogprob, Usage, encode_body
from vse.llm.errors import LLMError, LLMHTTPError, LLMResponseError, LLMRetriesExhausted

from .fakes import FakeSession, Sleeps, load_reply, make_response

URL = "http://127.0.0.1:8765/v1"
OK = {
    "choices": [{"text": "ok", "finish_reason": "stop", "index": 0}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


def client(*script, **config) -> tuple[LLMClient, FakeSession, Sleeps]:
    session, sleeps = FakeSession(*script), Sleeps()
    cfg = ClientConfig(base_url=config.pop("base_url", URL), **config)
    return LLMClient(cfg, session=session, sleep=sleeps, rng=random.Random(0)), session, sleeps


# -- request bytes --------------------------------------------------------------------------------


def test_complete_posts_minimal_sorted_body():
    c, s, _ = client(make_response(200, OK))
    c.complete("Hi", max_tokens=5)
    req = s.requests[0]
    assert req["url"] == f"{URL}/completions"
    assert req["data"] == b'{"max_tokens":5,"model":"local","prompt":"Hi","temperature":0.0}'
    assert req["timeout"] == (5.0, 120.0)  # (connect, read)
    assert req["headers"] == {"Content-Type": "application/json"}


def test_chat_body_has_logprob_options_only_when_asked():
    c, s, _ = client(
        make_response(200, load_reply("chat_logprobs.json")), make_response(200, load_reply("chat_logprobs.json"))
    )
    msgs = [{"role": "user", "content": "Say 7"}]
    c.chat(msgs, max_tokens=1)
    c.chat(msgs, max_tokens=1, logprobs=True, top_logprobs=5, seed=3, stop=["\n"])
    assert s.requests[0]["url"] == f"{URL}/chat/completions"
    assert s.body(0) == {"model": "local", "messages": msgs, "temperature": 0.0, "max_tokens": 1}
    assert s.body(1) == {**s.body(0), "logprobs": True, "top_logprobs": 5, "seed": 3, "stop": ["\n"]}


def test_echo_and_logprobs_sent_for_legacy_completions():
    c, s, _ = client(make_response(200, load_reply("completion_echo.json")))
    c.complete("The capital of France is", max_tokens=1, logprobs=3, echo=True)
    assert s.body() == {
        "model": "local",
        "prompt": "The capital of France is",
        "temperature": 0.0,
        "max_tokens": 1,
        "logprobs": 3,
        "echo": True,
    }


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3)),
        max_size=6,
    )
)
def test_encode_body_is_deterministic_and_drops_none(payload):
    reordered = dict(reversed(list(payload.items())))
    assert encode_body(payload) == encode_body(reordered)
    assert json.loads(encode_body(payload)) == {k: v for k, v in payload.items() if v is not None}


def test_same_call_same_bytes():
    c, s, _ = client(make_response(200, OK), make_response(200, OK))
    for _ in range(2):
        c.complete("x\ty é", max_tokens=1, logprobs=20, stop=["\n", "\t"], seed=7)
    assert s.requests[0]["data"] == s.requests[1]["data"]
    assert "é".encode() in s.requests[0]["data"]


# -- retries ---------------------------------------------------------------------------------------


def test_429_honours_retry_after():
    c, s, sleeps = client(
        make_response(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "7"}), make_response(200, OK)
    )
    assert c.complete("Hi").text == "ok"
    assert sleeps == [7.0]
    assert len(s.requests) == 2


def test_retry_after_is_capped():
    c, _, sleeps = client(
        make_response(429, {}, headers={"Retry-After": "3600"}), make_response(200, OK), backoff_max_s=30.0
    )
    c.complete("Hi")
    assert sleeps == [30.0]


def test_503_backs_off_exponentially_with_bounded_jitter():
    script = [make_response(503, text="busy") for _ in range(4)] + [make_response(200, OK)]
    c, s, sleeps = client(*script, backoff_base_s=1.0, backoff_max_s=5.0)
    assert c.complete("Hi").text == "ok"
    assert len(s.requests) == 5
    assert len(sleeps) == 4
    for attempt, wait in enumerate(sleeps):
        assert 0.0 <= wait <= min(5.0, 2.0**attempt)


@pytest.mark.parametrize("status", [408, 409, 500, 502, 504])
def test_other_retryable_statuses(status):
    c, _, sleeps = client(make_response(status, {}), make_response(200, OK))
    assert c.complete("Hi").text == "ok"
    assert len(sleeps) == 1


@pytest.mark.parametrize("exc", [requests.ConnectionError("refused"), requests.Timeout("read timed out")])
def test_connection_errors_are_retried(exc):
    c, _, sleeps = client(exc, make_response(200, OK))
    assert c.complete("Hi").text == "ok"
    assert len(sleeps) == 1


def test_400_fails_at_once_with_the_servers_message():
    body = {
        "error": {"message": "Requested tokens (5000) exceed context window of 4096", "type": "invalid_request_error"}
    }
    c, s, sleeps = client(make_response(400, body))
    with pytest.raises(LLMHTTPError) as info:
        c.complete("Hi")
    err = info.value
    assert (err.status, err.url) == (400, f"{URL}/completions")
    assert "exceed context window" in err.message and "exceed context window" in str(err)
    assert sleeps == [] and len(s.requests) == 1


def test_llama_cpp_validation_error_is_a_500_that_is_not_retried():
    c, s, sleeps = client(make_response(500, load_reply("error_validation_500.json")))
    with pytest.raises(LLMHTTPError, match="valid integer") as info:
        c.complete("Hi")
    assert info.value.status == 500 and sleeps == [] and len(s.requests) == 1


def test_context_overflow_message_surfaces():
    c, _, _ = client(make_response(400, load_reply("error_context_400.json")))
    with pytest.raises(LLMHTTPError, match="maximum context length is 4096 tokens"):
        c.complete("Hi")


def test_fastapi_validation_error_detail_surfaces():
    body = {
        "detail": [{"loc": ["body", "max_tokens"], "msg": "Input should be a valid integer", "type": "int_parsing"}]
    }
    c, _, _ = client(make_response(422, body))
    with pytest.raises(LLMHTTPError, match="valid integer"):
        c.complete("Hi")


def test_retries_exhausted_names_url_attempts_and_last_status():
    c, s, sleeps = client(*[make_response(503, {"error": {"message": "overloaded"}}) for _ in range(3)], max_retries=2)
    with pytest.raises(LLMRetriesExhausted) as info:
        c.complete("Hi")
    err = info.value
    assert (err.url, err.attempts, err.last_status) == (f"{URL}/completions", 3, 503)
    assert "overloaded" in str(err) and "3 attempts" in str(err)
    assert len(sleeps) == 2 and len(s.requests) == 3


def test_retries_exhausted_after_connection_errors():
    c, _, _ = client(*[requests.ConnectionError("Connection refused") for _ in range(2)], max_retries=1)
    with pytest.raises(LLMRetriesExhausted, match="refused the connection") as info:
        c.complete("Hi")
    assert info.value.last_status is None
    assert isinstance(info.value, LLMError)


def test_unexpected_exceptions_are_not_retried():
    c, _, sleeps = client(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        c.complete("Hi")
    assert sleeps == []


# -- malformed replies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resp, problem",
    [
        (make_response(200, text="<html>Bad gateway</html>"), "not JSON"),
        (make_response(200, ["a"]), "not a JSON object"),
        (make_response(200, {"object": "text_completion"}), "no choices"),
        (make_response(200, {"choices": []}), "no choices"),
    ],
)
def test_malformed_reply(resp, problem):
    c, _, sleeps = client(resp, max_retries=0)
    with pytest.raises(LLMResponseError) as info:
        c.complete("Hi")
    assert info.value.url == f"{URL}/completions"
    assert problem in str(info.value)
    assert sleeps == []


def test_malformed_reply_snippet_is_short():
    c, _, _ = client(make_response(200, text="x" * 10_000), max_retries=0)
    with pytest.raises(LLMResponseError) as info:
        c.complete("Hi")
    assert len(info.value.snippet) < 400


# -- keys ------------------------------------------------------------------------------------------


def test_key_sent_as_bearer_when_set():
    c, s, _ = client(make_response(200, OK), api_key="sk-test-123")
    c.complete("Hi")
    assert s.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"


def test_repr_hides_the_key():
    cfg = ClientConfig(base_url=URL, api_key="sk-secret-999")
    assert "sk-secret-999" not in repr(cfg) and "sk-secret-999" not in str(cfg)
    assert "***" in repr(cfg)
    assert "sk-secret-999" not in repr(LLMClient(cfg, session=FakeSession()))
    assert "api_key=None" in repr(ClientConfig(base_url=URL))


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("VSE_BASE_URL", "OPENAI_BASE_URL", "VSE_API_KEY", "OPENAI_API_KEY", "VSE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_openai_key_not_sent_to_other_hosts_by_default(clean_env):
    clean_env.setenv("OPENAI_API_KEY", "sk-openai")
    cfg = ClientConfig.from_env(base_url=URL)
    assert cfg.api_key is None
    c = LLMClient(cfg, session=FakeSession(make_response(200, OK)))
    c.complete("Hi")
    assert "Authorization" not in c.session.requests[0]["headers"]


def test_openai_key_used_for_openai_or_when_allowed(clean_env):
    clean_env.setenv("OPENAI_API_KEY", "sk-openai")
    assert ClientConfig.from_env(base_url="https://api.openai.com/v1").api_key == "sk-openai"
    assert ClientConfig.from_env(base_url=URL, allow_openai_key_elsewhere=True).api_key == "sk-openai"


def test_env_resolution_order(clean_env):
    assert ClientConfig.from_env().base_url == "http://127.0.0.1:8765/v1"
    clean_env.setenv("OPENAI_BASE_URL", "http://other:1/v1")
    assert ClientConfig.from_env().base_url == "http://other:1/v1"
    clean_env.setenv("VSE_BASE_URL", "http://mine:2/v1/")
    clean_env.setenv("VSE_API_KEY", "vse-key")
    clean_env.setenv("OPENAI_API_KEY", "sk-openai")
    clean_env.setenv("VSE_MODEL", "qwen")
    cfg = ClientConfig.from_env()
    assert (cfg.base_url, cfg.api_key, cfg.model) == ("http://mine:2/v1", "vse-key", "qwen")
    explicit = ClientConfig.from_env(base_url="http://x:3/v1", model="m", api_key="k", timeout_s=5.0)
    assert (explicit.base_url, explicit.model, explicit.api_key, explicit.timeout_s) == ("http://x:3/v1", "m", "k", 5.0)


# -- usage -----------------------------------------------------------------------------------------


def test_usage_arithmetic():
    assert Usage(1, 2) + Usage(10, 20) == Usage(11, 22)
    assert Usage(3, 4).total == 7


def test_usage_summed_over_calls_and_missing_usage_counts_zero():
    no_usage = {"choices": [{"text": "x", "finish_reason": "length"}]}
    c, _, _ = client(make_response(200, OK), make_response(200, no_usage), make_response(200, OK))
    results = [c.complete("Hi") for _ in range(3)]
    assert results[1].usage == Usage()
    assert c.usage == Usage(6, 2)
    assert c.calls == 3
    assert c.usage_missing == 1


# -- logprob parsing, against replies captured from the real llama.cpp server ------------------------


def test_legacy_completion_logprobs():
    reply = load_reply("completion_logprobs.json")
    c, _, _ = client(make_response(200, reply))
    out = c.complete("whatever", max_tokens=3, logprobs=5)
    lp = reply["choices"][0]["logprobs"]
    assert isinstance(out, Completion)
    assert out.text == reply["choices"][0]["text"]
    assert out.finish_reason == reply["choices"][0]["finish_reason"]
    assert [t.token for t in out.tokens] == lp["tokens"]
    assert [t.logprob for t in out.tokens] == lp["token_logprobs"]
    assert [t.top for t in out.tokens] == lp["top_logprobs"]
    assert all(isinstance(t, TokenLogprob) and t.token in t.top for t in out.tokens)
    assert out.prompt_tokens is None
    assert out.usage == Usage(reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"])


def test_chat_logprobs():
    reply = load_reply("chat_logprobs.json")
    c, _, _ = client(make_response(200, reply))
    out = c.chat([{"role": "user", "content": "x"}], max_tokens=2, logprobs=True, top_logprobs=5)
    content = reply["choices"][0]["logprobs"]["content"]
    assert out.text == reply["choices"][0]["message"]["content"]
    assert [t.token for t in out.tokens] == [item["token"] for item in content]
    assert [t.logprob for t in out.tokens] == [item["logprob"] for item in content]
    assert out.tokens[0].top == {e["token"]: e["logprob"] for e in content[0]["top_logprobs"]}
    assert out.prompt_tokens is None


def test_chat_without_logprobs_has_no_tokens():
    reply = load_reply("chat_logprobs.json")
    reply["choices"][0]["logprobs"] = None
    c, _, _ = client(make_response(200, reply))
    assert c.chat([{"role": "user", "content": "x"}]).tokens == []


def test_echo_splits_prompt_and_generated_tokens_and_undoes_llama_cpp_shift():
    # The real reply lists the 5 prompt tokens only, each with the alternatives for the NEXT
    # token, and drops the generated " Paris"; the client rebuilds the OpenAI layout.
    reply = load_reply("completion_echo.json")
    prompt = "The capital of France is"
    c, _, _ = client(make_response(200, reply))
    out = c.complete(prompt, max_tokens=1, logprobs=3, echo=True)
    raw_top = reply["choices"][0]["logprobs"]["top_logprobs"]
    assert out.text == " Paris"
    assert [t.token for t in out.prompt_tokens] == ["The", " capital", " of", " France", " is"]
    assert [t.token for t in out.tokens] == [" Paris"]
    first, second, third = out.prompt_tokens[:3]
    assert math.isnan(first.logprob) and first.top == {}
    assert math.isnan(second.logprob) and second.top == {}  # the server nulls the only distribution for it
    assert third.top == {k: v for k, v in raw_top[1].items() if k != " capital"}
    assert third.logprob == raw_top[1][" of"]
    assert out.tokens[0].top == {k: v for k, v in raw_top[4].items() if k != " is"}
    assert (
        out.tokens[0].logprob == raw_top[4][" Paris"] and max(out.tokens[0].top, key=out.tokens[0].top.get) == " Paris"
    )


def test_echo_in_openai_layout_is_left_as_sent():
    prompt = "ab"
    lp = {
        "tokens": ["a", "b", "c"],
        "token_logprobs": [None, -1.0, -0.5],
        "text_offset": [0, 1, 2],
        "top_logprobs": [None, {"b": -1.0, "x": -0.7}, {"c": -0.5, "d": -1.5}],
    }
    reply = {
        "choices": [{"text": "abc", "logprobs": lp, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
    c, _, _ = client(make_response(200, reply))
    out = c.complete(prompt, max_tokens=1, logprobs=2, echo=True)
    assert out.text == "c"
    assert [(t.token, t.top) for t in out.prompt_tokens] == [("a", {}), ("b", {"b": -1.0, "x": -0.7})]
    assert out.tokens == [TokenLogprob("c", -0.5, {"c": -0.5, "d": -1.5})]


def test_echo_split_falls_back_to_usage_without_offsets():
    lp = {"tokens": ["a", "b", "c"], "token_logprobs": [None, -1.0, -0.5], "top_logprobs": [None, {}, {}]}
    reply = {"choices": [{"text": "abc", "logprobs": lp}], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}
    c, _, _ = client(make_response(200, reply))
    out = c.complete("ab", max_tokens=1, logprobs=2, echo=True)
    assert [t.token for t in out.prompt_tokens] == ["a", "b"] and [t.token for t in out.tokens] == ["c"]


def test_unreadable_logprobs_are_a_response_error():
    reply = load_reply("completion_logprobs.json")
    reply["choices"][0]["logprobs"]["token_logprobs"] = [0.0]
    c, _, _ = client(make_response(200, reply))
    with pytest.raises(LLMResponseError, match="logprobs"):
        c.complete("x", logprobs=5)


@pytest.mark.parametrize(
    "bad",
    [
        make_response(200, text="<html>Bad gateway</html>"),
        make_response(200, {"choices": []}),
        make_response(200, {"object": "text_completion"}),
    ],
)
def test_malformed_200_is_retried_with_the_same_backoff(bad):
    c, s, sleeps = client(bad, make_response(200, OK))
    assert c.complete("Hi").text == "ok"
    assert len(s.requests) == 2 and len(sleeps) == 1 and 0 <= sleeps[0] <= 1.0
    assert c.calls == 1


def test_malformed_200_every_time_ends_in_a_response_error_after_the_retries():
    c, s, sleeps = client(*[make_response(200, {"choices": []}) for _ in range(3)], max_retries=2)
    with pytest.raises(LLMResponseError, match="no choices"):
        c.complete("Hi")
    assert len(s.requests) == 3 and len(sleeps) == 2


# -- base URL and endpoint differences --------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/v1"),
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765/v1"),
        ("http://127.0.0.1:8765/v1/", "http://127.0.0.1:8765/v1"),
        ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1"),
    ],
)
def test_base_url_is_normalised_in_one_place(given, expected):
    from vse.llm.client import normalize_base_url

    assert normalize_base_url(given) == expected
    assert ClientConfig(base_url=given).base_url == expected
    assert ClientConfig.from_env(base_url=given).base_url == expected


@pytest.mark.parametrize("bad", ["127.0.0.1:8765", "ftp://host/v1", "http:///v1", ""])
def test_base_url_without_scheme_or_host_is_refused(bad):
    with pytest.raises(ValueError, match="base URL"):
        ClientConfig(base_url=bad)


def test_base_url_without_v1_posts_to_the_v1_path():
    c, s, _ = client(make_response(200, OK), base_url="http://127.0.0.1:8765")
    c.complete("Hi")
    assert s.requests[0]["url"] == "http://127.0.0.1:8765/v1/completions"


# Shapes of the real 400 bodies: OpenAI names the field in `param`; vLLM (FastAPI) only in the message.
OPENAI_400 = {
    "error": {
        "message": "Invalid value for 'logprobs': must be a boolean.",
        "type": "invalid_request_error",
        "param": "logprobs",
        "code": None,
    }
}
VLLM_400 = {
    "object": "error",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
    "message": "[{'type': 'extra_forbidden', 'loc': ('body', 'echo'), "
    "'msg': 'Extra inputs are not permitted', 'input': True}]",
}
VLLM_TOP = {
    "object": "error",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
    "message": "top_logprobs must be between 0 and 5, got 20",
}
FASTAPI_422 = {
    "detail": [{"loc": ["body", "seed"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}]
}


@pytest.mark.parametrize(
    "status, body, field",
    [
        (400, OPENAI_400, "logprobs"),
        (400, VLLM_400, "echo"),
        (400, VLLM_TOP, "top_logprobs"),
        (422, FASTAPI_422, "seed"),
    ],
)
def test_rejected_field_is_named_with_the_endpoint(status, body, field):
    c, s, sleeps = client(make_response(status, body))
    with pytest.raises(LLMHTTPError) as info:
        c.complete("Hi", logprobs=5, echo=True, seed=1)
    text = str(info.value)
    assert f"request field {field!r}" in text
    assert f"{URL}/completions" in info.value.message  # the endpoint, in the message itself
    assert sleeps == [] and len(s.requests) == 1


def test_a_400_naming_no_optional_field_is_left_as_the_server_said():
    c, _, _ = client(make_response(400, load_reply("error_context_400.json")))
    with pytest.raises(LLMHTTPError) as info:
        c.complete("Hi")
    assert "request field" not in str(info.value)


class _GetSession:
    """Answers `get` from a script (FakeSession answers `post` only)."""

    def __init__(self, *script):
        self.script = list(script)
        self.requests = []

    def get(self, url, *, headers, timeout):
        self.requests.append({"url": url, "headers": dict(headers), "timeout": timeout})
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def test_get_json_retries_like_a_completion_but_is_not_counted():
    session = _GetSession(make_response(503, {"error": {"message": "loading"}}), make_response(200, {"data": []}))
    sleeps = Sleeps()
    c = LLMClient(ClientConfig(base_url="http://h:1/v1", api_key="k"), session=session, sleep=sleeps)
    assert c.get_json("models") == {"data": []}
    assert [r["url"] for r in session.requests] == ["http://h:1/v1/models"] * 2 and len(sleeps) == 1
    # No body, so no Content-Type; the key goes along as for any call to the endpoint.
    assert session.requests[0]["headers"] == {"Authorization": "Bearer k"}
    assert c.calls == 0


def test_get_json_fails_at_once_on_a_page_that_is_not_json():
    session = _GetSession(make_response(200, text="<html>"))
    c = LLMClient(ClientConfig(base_url="http://h:1/v1"), session=session, sleep=Sleeps())
    with pytest.raises(LLMResponseError, match="not JSON"):
        c.get_json("models")
    assert len(session.requests) == 1


def test_a_server_on_this_machine_gets_a_long_read_timeout_a_remote_one_does_not():
    # A loopback server that keeps the connection open is busy, not dead: no second copy of the request.
    assert ClientConfig.from_env(base_url="http://127.0.0.1:8765/v1").timeout_s == 900.0
    assert ClientConfig.from_env(base_url="http://localhost:8765").timeout_s == 900.0
    assert ClientConfig.from_env(base_url="http://gpu-box:8000/v1").timeout_s == 120.0
    assert ClientConfig.from_env(base_url="http://127.0.0.1:8765/v1", timeout_s=30.0).timeout_s == 30.0
