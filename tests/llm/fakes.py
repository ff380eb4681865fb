"""Test doubles for the LLM client: a scripted `requests` session and real-shaped replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

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
