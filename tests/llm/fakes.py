"""Test doubles for the LLM client: a scripted `requests` session and real-shaped replies (for the
client's own tests), and a scripted stand-in for the client itself (for the code that calls it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests

from vse.llm.client import Completion, TokenLogprob, Usage

DATA = Path(__file__).parent / "data"


def load_reply(name: str) -> dict[str, Any]:
    """A reply body captured from the real llama.cpp server (see data/README.md)."""
    return json.loads((DATA / name).read_text())


def make_response(
    status: int = 200,
    body: Any = None,
    *,
    text: str | None = None,
    headers: dict | None = None,
    url: str = "http://llm.test/v1/x",
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.url = url
    resp.encoding = "utf-8"
    if text is None:
        text = json.dumps(body if body is not None else {})
        resp.headers["Content-Type"] = "application/json"
    resp._content = text.encode("utf-8")
    resp.headers.update(headers or {})
    return resp


class FakeSession:
    """Stands in for `requests.Session`: answers `post` from a script of responses/exceptions."""

    def __init__(self, *script: requests.Response | BaseException) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []

    def post(self, url: str, *, data: bytes, headers: dict, timeout: float) -> requests.Response:
        self.requests.append({"url": url, "data": data, "headers": dict(headers), "timeout": timeout})
        if not self.script:
            raise AssertionError(f"unexpected request #{len(self.requests)} to {url}")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i]["data"])


class Sleeps(list):
    """An injectable `sleep` that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# A prompt is a string (completions) or a list of messages (chat); an answer is a function of it.
Prompt = str | list[dict[str, str]]
Answer = Callable[[Prompt, dict[str, Any]], Completion]


class ScriptedClient:
    """Stands in for `vse.llm.client.LLMClient` where vse.method calls it: `complete`, `chat`, `get_json`,
    `config.model`, and `calls` / `usage` counted like the real client.

    `script` is what it answers with: a function of (prompt or messages, request fields) returning a
    `Completion`, or an iterable of `Completion`s played in order. Without a script every call fails
    the test (a path that passes made no request). Every call is kept, in order: `prompts` (the
    prompt string, or the chat messages) and `requests` (api, prompt, fields). Thread-safe for
    predictions in flight: the bookkeeping is under a lock, the script runs outside it.
    """

    def __init__(
        self,
        script: Answer | Iterable[Completion] | None = None,
        *,
        model: str = "fake-model",
        base_url: str = "http://llm.test/v1",
        models: dict[str, Any] | None = None,
    ) -> None:
        self.config = SimpleNamespace(model=model, base_url=base_url, timeout_s=1.0)
        self.answer = script if callable(script) or script is None else None
        self.queue = None if callable(script) or script is None else iter(script)
        self.models = models  # GET /models's reply; None: get_json fails like a server without it
        self.calls = 0
        self.usage = Usage()
        self.prompts: list[Prompt] = []
        self.requests: list[tuple[str, Prompt, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def complete(self, prompt: str, **kw: Any) -> Completion:
        return self._call("completions", prompt, kw)

    def chat(self, messages: list[dict[str, str]], **kw: Any) -> Completion:
        return self._call("chat", messages, kw)

    def get_json(self, path: str) -> dict[str, Any]:
        if path == "models" and self.models is not None:
            return self.models
        raise AssertionError(f"no GET {path} expected")

    def _call(self, api: str, prompt: Prompt, kw: dict[str, Any]) -> Completion:
        with self.lock:
            self.calls += 1
            n = self.calls
            self.prompts.append(prompt)
            self.requests.append((api, prompt, kw))
            if self.queue is not None:
                reply = next(self.queue, None)
                if reply is None:
                    raise AssertionError(f"unexpected LLM call #{n}: the script is played out")
        if self.queue is None:
            if self.answer is None:
                raise AssertionError(f"no LLM call expected (call #{n}, {api})")
            reply = self.answer(prompt, kw)
        with self.lock:
            self.usage = self.usage + reply.usage
        return reply

    @property
    def fields(self) -> list[dict[str, Any]]:
        """The request fields of every call, in order."""
        return [kw for _, _, kw in self.requests]


def last_line(prompt: Prompt) -> str:
    """The prompt's last line (of the last message for chat): the item a one-item prompt asks about."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return text.rsplit("\n", 1)[-1]


ONE_TOKEN_USAGE = Usage(3, 1)


def one_token(top: dict[str, float], *, usage: Usage = ONE_TOKEN_USAGE, token: str = "x") -> Completion:
    """A one-token reply whose top logprobs are `top` (what a one-item prediction reads)."""
    return Completion(token, [TokenLogprob(token, 0.0, top)], usage, "length")
