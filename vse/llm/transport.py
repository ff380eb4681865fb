"""The bytes on the wire: deterministic request bodies, the pooled session, and reading a reply's JSON.

Request bodies are JSON with sorted keys and fixed separators, and omit every option left at None,
so the same call always sends the same bytes (cassettes match on the body).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from vse.llm.errors import LLMResponseError
from vse.llm.failures import snippet


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Deterministic JSON bytes: None values dropped, keys sorted, no spaces."""
    clean = {k: v for k, v in payload.items() if v is not None}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


#: Connections kept open per host: enough for every one-item prediction in flight (requests'
#: default of 10 closes the ones beyond it after each use, with a warning each time).
POOL_CONNECTIONS = 64


def new_session() -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_CONNECTIONS)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def json_object(url: str, resp: requests.Response) -> dict[str, Any]:
    """A reply's body as a JSON object, else an `LLMResponseError` quoting its start."""
    try:
        body = resp.json()
    except ValueError as exc:
        raise LLMResponseError(url, "not JSON", snippet(resp.text)) from exc
    if not isinstance(body, dict):
        raise LLMResponseError(url, "not a JSON object", snippet(resp.text))
    return body


def completion_body(url: str, resp: requests.Response) -> dict[str, Any]:
    """A completion reply's body: a JSON object with a non-empty ``choices`` list of objects."""
    body = json_object(url, resp)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMResponseError(url, "no choices", snippet(resp.text))
    return body
