"""A failed attempt, read: the server's own words, whether retrying can fix it, and a connection error
or timeout in a few words instead of urllib3's repr.

`http_failure` and `connection_failure` classify one failed attempt; the client's retry loop only acts
on what they return. `rejection_error` is the one place where differences between endpoints (a request
field one of them lacks) surface to the user.
"""

from __future__ import annotations

import json
import math
import re
import socket
from dataclasses import dataclass
from typing import Any

import requests

from vse.llm.errors import LLMEndpointRejected, LLMHTTPError

#: Statuses worth retrying: request timeout, conflict, rate limit, and every 5xx.
RETRY_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class Failure:
    """A failed attempt worth retrying.

    status: the HTTP status, or None when no answer came (a connection error or timeout).
    error: what went wrong, in words (the server's message, or `describe_failure`'s).
    retry_after: the server's ``Retry-After`` in seconds, if it sent one.
    connection: the endpoint looks down (not merely slow): the shorter connect backoff applies, and
        the circuit breaker counts it.
    """

    status: int | None
    error: str
    retry_after: float | None = None
    connection: bool = False

    def describe(self) -> str:
        """The words after "HOST:PORT" in a retry line."""
        return self.error if self.status is None else f"answered HTTP {self.status} ({snippet(self.error, 60)})"


def http_failure(resp: requests.Response, url: str) -> Failure | LLMHTTPError:
    """A reply with status >= 400: the failure to retry, or the error that retrying cannot fix."""
    message = _error_message(resp)
    retryable = resp.status_code in RETRY_STATUSES or resp.status_code >= 500
    if not retryable or _is_validation_error(resp.status_code, message):
        return rejection_error(resp.status_code, message, url, _json_or_none(resp))
    return Failure(resp.status_code, message, retry_after=_retry_after(resp))


def connection_failure(exc: BaseException, read_timeout_s: float | None = None) -> Failure:
    """A connection error or timeout, as a failure to retry (``connection`` when it says the endpoint is down)."""
    return Failure(None, describe_failure(exc, read_timeout_s), connection=counts_as_down(exc))


def snippet(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _error_message(resp: requests.Response) -> str:
    """The server's own words from a JSON error body (OpenAI, llama.cpp, FastAPI shapes)."""
    try:
        body = resp.json()
    except ValueError:
        return snippet(resp.text.strip()) or (resp.reason or "")
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if "detail" in body:
            detail = body["detail"]
            return detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
        if body.get("message"):
            return str(body["message"])
    return snippet(json.dumps(body, sort_keys=True))


#: Optional request fields that not every OpenAI-compatible server accepts (OpenAI's chat endpoint
#: has no ``echo``, some vLLM versions refuse prompt logprobs, older models refuse ``seed``).
#: Longest first, so ``top_logprobs`` is not reported as ``logprobs``.
OPTIONAL_FIELDS = ("top_logprobs", "logprobs", "echo", "seed")
_FIELD_RE = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(OPTIONAL_FIELDS) + r")(?![A-Za-z0-9_])")


def rejected_field(body: Any, message: str) -> str | None:
    """The optional request field a 400/422 reply complains about, or None.

    OpenAI names it in ``error.param``; vLLM, FastAPI and llama.cpp only in the message text
    (``'loc': ('body', 'echo')``, ``"logprobs is not supported"``).
    """
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        param = body["error"].get("param")
        if isinstance(param, str) and param in OPTIONAL_FIELDS:
            return param
    match = _FIELD_RE.search(message)
    return match.group(1) if match else None


def rejection_error(status: int, message: str, url: str, body: Any = None) -> LLMHTTPError:
    """The error for a reply that retrying cannot fix; where the server rejects one of the
    optional fields, the message says which field and that this endpoint lacks it.

    This is the one place where differences between endpoints surface to the user.
    """
    if status in (400, 422) or _is_validation_error(status, message):
        field = rejected_field(body, message)
        if field is not None:
            message = (
                f"the endpoint {url} does not accept the request field {field!r} "
                f"(use an endpoint that supports it, or a simulation mode that does not send it); "
                f"server said: {message}"
            )
    if status in (401, 403, 404):
        return LLMEndpointRejected(status, message, url)
    return LLMHTTPError(status, message, url)


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _is_validation_error(status: int, message: str) -> bool:
    """llama-cpp-python answers a request that fails validation with 500, not 422: don't retry it."""
    return status == 500 and " validation error" in message and "'loc': ('body'" in message


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date: rare for these APIs, fall back to our own backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything underneath it: requests wraps urllib3 wraps the socket error."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return seen


def describe_failure(exc: BaseException, read_timeout_s: float | None = None) -> str:
    """A connection error or timeout in a few words, instead of urllib3's 300-character repr.

    The words complete "HOST:PORT ...", e.g. "refused the connection".
    """
    import http.client

    chain = _causes(exc)
    text = " ".join(str(e) for e in chain).lower()

    def has(*types: type) -> bool:
        return any(isinstance(e, types) for e in chain)

    connect_timeout = "connect timeout" in text or ("connection to" in text and "timed out" in text)
    if isinstance(exc, requests.ConnectTimeout) or connect_timeout:
        return "did not accept the connection in time"
    if isinstance(exc, requests.Timeout):
        return f"did not reply within {read_timeout_s:.0f} s" if read_timeout_s else "did not reply in time"
    if has(ConnectionRefusedError) or "refused" in text:
        return "refused the connection"
    if has(socket.gaierror) or any(
        w in text
        for w in ("name or service not known", "failed to resolve", "nodename nor servname", "name resolution")
    ):
        return "is an unknown host name"
    if has(http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError) or any(
        w in text for w in ("connection aborted", "reset by peer", "remote end closed")
    ):
        return "closed the connection mid-request"
    if "unreachable" in text or "no route to host" in text:
        return "is unreachable (no route)"
    return f"failed to connect ({type(exc).__name__})"


def counts_as_down(exc: BaseException) -> bool:
    """Whether a failed attempt says the endpoint is not there (a read timeout only says it is slow)."""
    return isinstance(exc, requests.ConnectionError)
