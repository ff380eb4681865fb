"""A thin client for OpenAI-compatible completion endpoints, over plain `requests`.

Why not a vendor SDK: the request bytes must be exactly reproducible (cassettes match on the
body), retries must be bounded and testable without waiting, and the local llama.cpp server
is the main target. The client never sees NumPy; it hands back plain dataclasses.

- `LLMClient.chat`     POST {base_url}/chat/completions
- `LLMClient.complete` POST {base_url}/completions   (legacy completions, with `echo`)

Request bodies are JSON with sorted keys and fixed separators, and omit every option left
at None, so the same call always sends the same bytes. Every call has a timeout; 408, 409,
429, 5xx and connection errors/timeouts are retried with exponential backoff and full
jitter (or the server's `Retry-After`, capped); any other 4xx fails at once. Each retry is
one short line on stderr (``vse: 127.0.0.1:9 refused the connection; retry 1/5 in 0.8 s``).

A circuit breaker per endpoint (`CircuitBreaker`, shared by every client and thread of the
process) counts connection failures in a row; once it opens, every call to that endpoint fails
at once with `LLMEndpointDown` and every caller sleeping between retries is woken, so a run with
many workers stops within seconds of the server going away instead of retrying unit by unit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse, urlsplit, urlunsplit

import requests

from vse.llm.cassettes import translate_vcr_error
from vse.llm.errors import (
    LLMEndpointDown,
    LLMEndpointRejected,
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMRetriesExhausted,
)

log = logging.getLogger(__name__)

#: The local server `vse llm serve` starts, used when neither an option nor the environment names one.
DEFAULT_BASE_URL = "http://127.0.0.1:8765/v1"
#: Statuses worth retrying: request timeout, conflict, rate limit, and every 5xx.
RETRY_STATUSES = frozenset({408, 409, 429})
OPENAI_HOST = "api.openai.com"


@dataclass(frozen=True)
class Usage:
    """Tokens billed for one or more calls (the cost)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class TokenLogprob:
    """One token position: the token, its logprob, and the top alternatives the server sent.

    `logprob` is NaN (and `top` empty) where the server sends null: the first prompt token of
    an `echo` reply, and where an echoed token's logprob is unknown (see `LLMClient.complete`).
    `top` keys are the token strings exactly as sent: a digit may carry a leading space, or the
    space may come as a token of its own (Qwen: " 4" -> " ", "4"; "10" -> "1", "0"); strip
    when reading numbers. llama.cpp adds the chosen token to `top`, so it may hold one entry
    more than asked for; its end-of-text token shows as "".
    """

    token: str
    logprob: float
    top: dict[str, float]


@dataclass(frozen=True)
class Completion:
    """The first choice of a reply.

    `text` is the generated text only (with `echo`, the prompt is split off into
    `prompt_tokens`). `tokens` are the generated tokens' logprobs (empty without logprobs).
    """

    text: str
    tokens: list[TokenLogprob]
    usage: Usage
    finish_reason: str | None
    prompt_tokens: list[TokenLogprob] | None = None


def _host(url: str) -> str:
    return (urlparse(url).hostname or "").lower()


def normalize_base_url(url: str) -> str:
    """The one place a base URL is checked and normalised: ``http://host:port`` -> ``http://host:port/v1``.

    Without the ``/v1`` every request path would differ from the recorded ones (cassettes match
    on the path), so a recording would silently redo every call. A URL with a path is kept as
    given (a proxy may mount the API elsewhere), minus trailing slashes. Anything that is not
    an http(s) URL with a host is refused with a `ValueError` naming it.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL must look like http://HOST:PORT/v1, got {url!r}")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """Where and how to call the LLM.

    base_url: up to and including the version, e.g. ``http://127.0.0.1:8765/v1``.
    model: sent as ``model`` (the local server ignores it).
    api_key: sent as ``Authorization: Bearer`` when set; never shown by ``repr``.
    timeout_s: per-attempt read timeout (a long completion on a slow server takes a while).
    connect_timeout_s: per-attempt connect timeout: a host that drops packets is told apart from a
        slow server in seconds, not after ``timeout_s``.
    max_retries: retries after the first attempt (so ``max_retries + 1`` attempts at most).
    backoff_base_s, backoff_max_s: attempt ``n`` (0-based) waits ``uniform(0, min(max, base * 2**n))``;
        a ``Retry-After`` in seconds replaces that, capped at ``backoff_max_s``.
    connect_backoff_s: the ``base`` after a connection failure instead (a server restarting is back
        in a second or two, or not soon at all: long waits only delay the breaker).
    breaker_failures: connection failures in a row, over every client of the endpoint, that open
        its circuit breaker (0: never); breaker_cooldown_s: how long it then refuses every call.
    breaker_window_s: the breaker also opens once connections have failed for this long in a row
        (at least two failures): a host that drops packets fails each attempt only after the
        connect timeout, and five of those would take most of a minute.
    """

    base_url: str
    model: str = "local"
    api_key: str | None = field(default=None, compare=False)
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    connect_timeout_s: float = 5.0
    connect_backoff_s: float = 0.5
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    breaker_window_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalize_base_url(self.base_url))

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "None"
        return (
            f"ClientConfig(base_url={self.base_url!r}, model={self.model!r}, api_key={key}, "
            f"timeout_s={self.timeout_s!r}, max_retries={self.max_retries!r}, "
            f"backoff_base_s={self.backoff_base_s!r}, backoff_max_s={self.backoff_max_s!r}, "
            f"connect_timeout_s={self.connect_timeout_s!r}, connect_backoff_s={self.connect_backoff_s!r}, "
            f"breaker_failures={self.breaker_failures!r}, breaker_cooldown_s={self.breaker_cooldown_s!r}, "
            f"breaker_window_s={self.breaker_window_s!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(
        cls,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        allow_openai_key_elsewhere: bool = False,
        **overrides: Any,
    ) -> ClientConfig:
        """Resolve options against the environment; an explicit argument always wins.

        base_url: argument, else ``VSE_BASE_URL``, else ``OPENAI_BASE_URL``, else the local server.
        model: argument, else ``VSE_MODEL``, else ``"local"``.
        api_key: argument, else ``VSE_API_KEY``, else ``OPENAI_API_KEY`` but only when the base URL's
            host is api.openai.com (or ``allow_openai_key_elsewhere``), so an OpenAI key is never
            sent to some other server by accident.
        overrides: other fields (timeout_s, max_retries, ...).
        """
        env = os.environ
        url = base_url or env.get("VSE_BASE_URL") or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = api_key or env.get("VSE_API_KEY") or None
        if key is None and (allow_openai_key_elsewhere or _host(url) == OPENAI_HOST):
            key = env.get("OPENAI_API_KEY") or None
        return cls(
            base_url=normalize_base_url(url), model=model or env.get("VSE_MODEL") or "local", api_key=key, **overrides
        )


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Deterministic JSON bytes: None values dropped, keys sorted, no spaces."""
    clean = {k: v for k, v in payload.items() if v is not None}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _snippet(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _error_message(resp: requests.Response) -> str:
    """The server's own words from a JSON error body (OpenAI, llama.cpp, FastAPI shapes)."""
    try:
        body = resp.json()
    except ValueError:
        return _snippet(resp.text.strip()) or (resp.reason or "")
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
    return _snippet(json.dumps(body, sort_keys=True))


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


# -- connection failures and the circuit breaker ---------------------------------------------------


def endpoint_of(url: str) -> str:
    """``scheme://host:port`` of a URL, without credentials or path: what one server answers on."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}"


def _where(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2] or url


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


class CircuitBreaker:
    """Connection failures in a row at one endpoint, counted over every client and thread.

    Closed: calls go through; an HTTP answer of any status resets the count (the server is there).
    After ``threshold`` failures in a row, or failures in a row for ``window_s`` seconds, it opens:
    `check` raises `LLMEndpointDown` for ``cooldown_s``, and `pause` (the wait between retries)
    returns at once, so every worker stops within seconds. After the cool-down one more try is let
    through; a failure reopens it at once, a success closes it. Thread-safe: the label runner and the
    concurrent simulators share it.
    """

    def __init__(
        self,
        endpoint: str,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.window_s = window_s
        self.first_failure_at = 0.0
        self.clock = clock
        self.failures = 0
        self.reason = ""
        self.opened_at: float | None = None
        self._lock = threading.Lock()
        self._open = threading.Event()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def error(self, url: str | None = None) -> LLMEndpointDown:
        return LLMEndpointDown(self.endpoint, self.failures, self.reason or "no connection", url or self.endpoint)

    def check(self, url: str | None = None) -> None:
        """Before an attempt: raise `LLMEndpointDown` while open (within the cool-down)."""
        if self.threshold <= 0:
            return
        with self._lock:
            if self.opened_at is None:
                return
            if self.clock() - self.opened_at < self.cooldown_s:
                raise self.error(url)
            # Half-open: let calls try again; the next failure reopens at once.
            self.opened_at = None
            self._open.clear()
            self.failures = self.threshold - 1

    def reachable(self) -> None:
        """The endpoint answered (any HTTP status)."""
        with self._lock:
            self.failures = 0
            self.opened_at = None
            self._open.clear()

    def failure(self, reason: str) -> bool:
        """A connection failure; True when the breaker is (now) open."""
        if self.threshold <= 0:
            return False
        with self._lock:
            now = self.clock()
            self.failures += 1
            if self.failures == 1:
                self.first_failure_at = now
            self.reason = reason
            long_down = self.failures >= 2 and now - self.first_failure_at >= self.window_s
            if (self.failures >= self.threshold or long_down) and self.opened_at is None:
                self.opened_at = now
                self._open.set()
                log.warning(
                    "vse: %s is down (%s %d times in a row): stopping every call to it",
                    _where(self.endpoint),
                    reason,
                    self.failures,
                )
            return self.opened_at is not None

    def pause(self, seconds: float) -> None:
        """Sleep between retries, waking early when the breaker opens."""
        self._open.wait(seconds)


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(config: ClientConfig) -> CircuitBreaker:
    """The process's one breaker for ``config``'s endpoint (made with the first config's settings)."""
    key = endpoint_of(config.base_url)
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(key)
        if breaker is None:
            breaker = _BREAKERS[key] = CircuitBreaker(
                key, config.breaker_failures, config.breaker_cooldown_s, window_s=config.breaker_window_s
            )
        return breaker


def reset_breakers() -> None:
    """Forget every endpoint's failures (tests; a long-lived process after fixing a server)."""
    with _BREAKERS_LOCK:
        _BREAKERS.clear()


def _cassette_miss(exc: BaseException) -> LLMError | None:
    """vcrpy's replay miss (raised from inside requests), as our `CassetteMiss`; else None."""
    return translate_vcr_error(exc)


def _top_from_list(entries: Sequence[Mapping[str, Any]] | None) -> dict[str, float]:
    top: dict[str, float] = {}
    for entry in entries or ():
        top.setdefault(str(entry["token"]), float(entry["logprob"]))
    return top


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def parse_logprobs(logprobs: Mapping[str, Any] | None) -> tuple[list[TokenLogprob], list[int | None]]:
    """`choices[0].logprobs` of any reply, whatever its shape: the one place logprobs are read.

    Three shapes reach vse:
    - legacy completions (OpenAI, llama-cpp-python): parallel lists ``tokens``, ``token_logprobs``,
      ``top_logprobs`` (one dict per token) and ``text_offset``;
    - chat completions: ``{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}``;
    - llama.cpp's ``llama-server`` answers ``/v1/completions`` in the chat shape too (entries also
      carry the token ``id``), not in the legacy one.

    Returns the tokens and their text offsets (None where the reply has none: the chat shape).
    """
    if not logprobs:
        return [], []
    if "content" in logprobs:
        tokens = parse_chat_logprobs(logprobs)
        return tokens, [None] * len(tokens)
    return parse_legacy_logprobs(logprobs)


def parse_chat_logprobs(logprobs: Mapping[str, Any] | None) -> list[TokenLogprob]:
    """The chat shape: ``{"content": [{token, logprob, bytes, top_logprobs: [...]}]}`` (see `parse_logprobs`)."""
    if not logprobs:
        return []
    return [
        TokenLogprob(str(item["token"]), _float(item.get("logprob")), _top_from_list(item.get("top_logprobs")))
        for item in logprobs.get("content") or ()
    ]


def parse_legacy_logprobs(logprobs: Mapping[str, Any] | None) -> tuple[list[TokenLogprob], list[int | None]]:
    """The legacy shape: parallel lists ``tokens``, ``token_logprobs``, ``top_logprobs`` (dicts,
    null for an echoed first token) and ``text_offset`` (see `parse_logprobs`).

    Returns the tokens and their text offsets (None where the server sent none).
    """
    if not logprobs:
        return [], []
    tokens = logprobs.get("tokens") or []
    lps = logprobs.get("token_logprobs") or [None] * len(tokens)
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    offsets = logprobs.get("text_offset") or [None] * len(tokens)
    if not (len(lps) == len(tops) == len(tokens)):
        raise ValueError(
            f"logprobs lists differ in length: {len(tokens)} tokens, {len(lps)} logprobs, {len(tops)} tops"
        )
    out = [
        TokenLogprob(str(tok), _float(lp), {str(k): float(v) for k, v in (top or {}).items()})
        for tok, lp, top in zip(tokens, lps, tops, strict=True)
    ]
    return out, list(offsets) + [None] * (len(out) - len(offsets))


def _echo_is_shifted(tokens: list[TokenLogprob], usage: Usage) -> bool:
    """Whether an echo reply has llama-cpp-python's off-by-one layout.

    For a model without a BOS token (Qwen), llama-cpp-python 0.3.x pairs token i with the
    distribution computed *after* token i (the one predicting token i+1), and so drops the
    last generated token: the reply lists one token fewer than ``usage`` counts. (When the
    model stops at once, ``completion_tokens`` is 0 and the layout cannot be told apart; it is
    then left as sent.)
    """
    return usage.completion_tokens >= 1 and len(tokens) == usage.prompt_tokens + usage.completion_tokens - 1


def _unshift_echo(
    tokens: list[TokenLogprob], offsets: list[int | None], full_text: str, k: int
) -> tuple[list[TokenLogprob], list[int | None]]:
    """Rebuild the OpenAI layout from the shifted one: position i gets the alternatives sent at
    position i-1, and the missing last token is recovered from the text.

    The server's own logprob for each token is from the wrong position; the right one is
    known only when the token is among the alternatives, else it is NaN. llama.cpp adds the
    (mis-scored) token itself to each position's alternatives; that entry is dropped.
    """
    joined = "".join(t.token for t in tokens)
    if not full_text.startswith(joined):
        log.warning("echo reply looks shifted but its tokens do not spell the text; left as sent")
        return tokens, offsets
    strings = [t.token for t in tokens] + [full_text[len(joined) :]]
    fixed = [TokenLogprob(strings[0], float("nan"), {})]
    for i in range(1, len(strings)):
        prev = tokens[i - 1]
        top = dict(prev.top)
        if len(top) > k:
            top.pop(prev.token, None)
        fixed.append(TokenLogprob(strings[i], top.get(strings[i], float("nan")), top))
    return fixed, list(offsets) + [len(joined)]


#: Connections kept open per host: enough for every one-item prediction in flight (requests'
#: default of 10 closes the ones beyond it after each use, with a warning each time).
POOL_CONNECTIONS = 64


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_CONNECTIONS)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class LLMClient:
    """Calls one OpenAI-compatible server. Keeps a running `usage` total and a `calls` count.

    `session`, `sleep`, `rng` and `breaker` are injectable so tests need neither a server nor real
    waits. The default ``sleep`` is the breaker's `CircuitBreaker.pause` (wakes when it opens); the
    default breaker is the process's one for the endpoint (`breaker_for`).
    Thread-safe: the totals are updated under a lock; requests' Session is shared.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.config = config
        self.session = session if session is not None else _new_session()
        self.breaker = breaker if breaker is not None else breaker_for(config)
        self.sleep = sleep if sleep is not None else self.breaker.pause
        self.rng = rng if rng is not None else random.Random()
        self.usage = Usage()
        self._count_lock = threading.Lock()
        self.calls = 0
        #: replies that carried no `usage` field (counted as 0 tokens)
        self.usage_missing = 0

    def __repr__(self) -> str:
        return f"LLMClient({self.config!r}, calls={self.calls}, usage={self.usage})"

    # -- public calls -------------------------------------------------------------------------

    def chat(
        self,
        messages: list[dict],
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
    ) -> Completion:
        """One chat completion; with ``logprobs=True`` each generated token comes with its
        ``top_logprobs`` alternatives (up to 20)."""
        payload = {
            "model": self.config.model,
            "messages": list(messages),
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "stop": stop,
            "logprobs": True if logprobs else None,
            "top_logprobs": top_logprobs,
        }
        url, body = self._post("chat/completions", payload)
        choice = body["choices"][0]
        message = choice.get("message") or {}
        try:
            tokens, _ = parse_logprobs(choice.get("logprobs"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LLMResponseError(url, f"unreadable logprobs ({exc!r})", _snippet(json.dumps(choice))) from exc
        return Completion(
            text=message.get("content") or "",
            tokens=tokens,
            usage=self._usage_of(body),
            finish_reason=choice.get("finish_reason"),
        )

    def complete(
        self,
        prompt: str,
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        logprobs: int | None = None,
        echo: bool = False,
    ) -> Completion:
        """One legacy completion. ``logprobs=N`` asks for the top N alternatives per token.

        With ``echo=True`` the server returns the prompt's tokens too; they are split off into
        ``Completion.prompt_tokens`` (by ``text_offset``: a token starting before the prompt's
        end is a prompt token), and the prompt is removed from ``text``. llama.cpp's
        ``llama-server`` ignores ``echo`` (a reply without the prompt is refused with an
        `LLMResponseError` naming the field). llama-cpp-python's server needs ``--logits_all
        true`` for any logprobs, and its 0.3.x
        shifts echo logprobs by one position for models without a BOS token (Qwen) and drops
        the last generated token; such a reply is detected (one token fewer than ``usage``
        counts) and put back into the OpenAI layout (``top`` at position i = alternatives for
        token i given the tokens before it). There, an echoed token's own logprob is known only
        when it is among the ``top`` alternatives (else NaN), and position 1 has none. Echo is
        slow on that server: about 0.2-0.35 s per prompt token on 2 cores.
        """
        payload = {
            "model": self.config.model,
            "prompt": prompt,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "stop": stop,
            "logprobs": logprobs,
            "echo": True if echo else None,
        }
        url, body = self._post("completions", payload)
        choice = body["choices"][0]
        text = choice.get("text") or ""
        usage = self._usage_of(body)
        try:
            tokens, offsets = parse_logprobs(choice.get("logprobs"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LLMResponseError(url, f"unreadable logprobs ({exc!r})", _snippet(json.dumps(choice))) from exc
        prompt_tokens = None
        if echo:
            if tokens and not text.startswith(prompt) and all(o is None for o in offsets):
                # llama.cpp's llama-server answers 200 and drops `echo` without a word: the reply
                # holds the generated tokens only. Splitting it would call them prompt tokens.
                raise LLMResponseError(
                    url,
                    "the server ignored the request field 'echo' (no prompt tokens in the "
                    "reply; llama.cpp's llama-server does not echo): use a simulation mode "
                    "that does not send it",
                    _snippet(text),
                )
            if text.startswith(prompt):
                text = text[len(prompt) :]
            if tokens and logprobs is not None and _echo_is_shifted(tokens, usage):
                tokens, offsets = _unshift_echo(tokens, offsets, prompt + text, logprobs)
            if all(o is not None for o in offsets):
                n_prompt = sum(1 for o in offsets if o < len(prompt))
            else:
                n_prompt = min(usage.prompt_tokens, len(tokens))
            prompt_tokens, tokens = tokens[:n_prompt], tokens[n_prompt:]
        return Completion(
            text=text,
            tokens=tokens,
            usage=usage,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=prompt_tokens,
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _usage_of(self, body: Mapping[str, Any]) -> Usage:
        raw = body.get("usage")
        if not isinstance(raw, Mapping):
            with self._count_lock:
                self.usage_missing += 1
                missing = self.usage_missing
            log.warning("reply without a usage field: counted as 0 tokens (%d so far)", missing)
            return Usage()
        usage = Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
        with self._count_lock:
            self.usage = self.usage + usage
        return usage

    def _count_call(self) -> None:
        with self._count_lock:
            self.calls += 1

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts for `requests`."""
        return (min(self.config.connect_timeout_s, self.config.timeout_s), self.config.timeout_s)

    def _backoff(self, attempt: int, retry_after: float | None, connection: bool = False) -> float:
        cap = self.config.backoff_max_s
        if retry_after is not None:
            return min(retry_after, cap)
        base = self.config.connect_backoff_s if connection else self.config.backoff_base_s
        return self.rng.uniform(0.0, min(cap, base * (2**attempt)))

    def _post(self, endpoint: str, payload: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """POST with retries; returns (url, reply JSON with a non-empty ``choices`` list)."""
        url = f"{self.config.base_url.rstrip('/')}/{endpoint}"
        data = encode_body(payload)
        attempts = self.config.max_retries + 1
        breaker = self.breaker
        last_status: int | None = None
        last_error = ""
        for attempt in range(attempts):
            breaker.check(self.config.base_url)  # an endpoint known to be down: fail now, not after retries
            retry_after = None
            connection_failure = False
            try:
                resp = self.session.post(url, data=data, headers=self._headers(), timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_status, last_error = None, describe_failure(exc, self.config.timeout_s)
                if counts_as_down(exc):
                    connection_failure = True
                    if breaker.failure(last_error):
                        self._count_call()
                        raise breaker.error(self.config.base_url) from None
            except LLMError:
                raise
            except Exception as exc:
                miss = _cassette_miss(exc)
                if miss is not None:
                    raise miss from exc
                raise
            else:
                breaker.reachable()
                if resp.status_code < 400:
                    try:
                        body = self._parse(url, resp)
                    except LLMResponseError as exc:
                        # A 200 that is not a completion (a proxy's HTML page, an empty `choices`)
                        # is a server fault like a 503: retry it. The cassette layer never stores
                        # such a reply, so while recording the retry reaches the server.
                        if attempt + 1 >= attempts:
                            self._count_call()
                            raise
                        last_status, last_error = resp.status_code, str(exc)
                    else:
                        self._count_call()
                        return url, body
                else:
                    message = _error_message(resp)
                    if (resp.status_code not in RETRY_STATUSES and resp.status_code < 500) or _is_validation_error(
                        resp.status_code, message
                    ):
                        self._count_call()
                        raise rejection_error(resp.status_code, message, url, _json_or_none(resp))
                    last_status, last_error = resp.status_code, message
                    retry_after = _retry_after(resp)
            if attempt + 1 < attempts:
                wait = self._backoff(attempt, retry_after, connection=connection_failure)
                what = (
                    last_error if last_status is None else f"answered HTTP {last_status} ({_snippet(last_error, 60)})"
                )
                log.warning("vse: %s %s; retry %d/%d in %.1f s", _where(url), what, attempt + 1, attempts - 1, wait)
                self.sleep(wait)
        self._count_call()
        raise LLMRetriesExhausted(url, attempts, last_status, last_error)

    @staticmethod
    def _parse(url: str, resp: requests.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError as exc:
            raise LLMResponseError(url, "not JSON", _snippet(resp.text)) from exc
        if not isinstance(body, dict):
            raise LLMResponseError(url, "not a JSON object", _snippet(resp.text))
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise LLMResponseError(url, "no choices", _snippet(resp.text))
        return body
