"""A thin client for OpenAI-compatible completion endpoints, over plain `requests`.

Why not a vendor SDK: the request bytes must be exactly reproducible (cassettes match on the
body), retries must be bounded and testable without waiting, and the local llama.cpp server
is the main target. The client never sees NumPy; it hands back plain dataclasses.

- `LLMClient.chat`     POST {base_url}/chat/completions
- `LLMClient.complete` POST {base_url}/completions   (legacy completions, with `echo`)
- `LLMClient.get_json` GET  {base_url}/{path}        (e.g. ``models``: what the server serves)

Every call has a timeout; 408, 409, 429, 5xx and connection errors/timeouts are retried with
exponential backoff and full jitter (or the server's `Retry-After`, capped); any other 4xx fails
at once. Each retry is one short line on stderr (``vse: 127.0.0.1:9 refused the connection;
retry 1/5 in 0.8 s``). A circuit breaker per endpoint (`vse.llm.breaker`), shared by every client
and thread of the process, stops every call to an endpoint that has gone away.

The parts live in modules of their own; the names callers import from here are re-exported:
`vse.llm.replies` (what a call hands back), `vse.llm.config` (where and how to call),
`vse.llm.transport` (request bytes, session), `vse.llm.failures` (reading a failed attempt),
`vse.llm.breaker`, `vse.llm.logprobs`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests

from vse.llm.breaker import CircuitBreaker, breaker_for, reset_breakers
from vse.llm.cassettes import translate_vcr_error
from vse.llm.config import DEFAULT_BASE_URL, OPENAI_HOST, ClientConfig, endpoint_of, normalize_base_url, where
from vse.llm.errors import LLMError, LLMResponseError, LLMRetriesExhausted
from vse.llm.failures import (
    OPTIONAL_FIELDS,
    RETRY_STATUSES,
    Failure,
    connection_failure,
    counts_as_down,
    describe_failure,
    http_failure,
    rejected_field,
    rejection_error,
    snippet,
)
from vse.llm.logprobs import (
    echo_is_shifted,
    parse_chat_logprobs,
    parse_legacy_logprobs,
    parse_logprobs,
    unshift_echo,
)
from vse.llm.replies import Completion, TokenLogprob, Usage
from vse.llm.slots import SlotWarmer
from vse.llm.transport import POOL_CONNECTIONS, completion_body, encode_body, json_object, new_session

__all__ = [
    "DEFAULT_BASE_URL",
    "OPENAI_HOST",
    "OPTIONAL_FIELDS",
    "POOL_CONNECTIONS",
    "RETRY_STATUSES",
    "CircuitBreaker",
    "ClientConfig",
    "Completion",
    "LLMClient",
    "TokenLogprob",
    "Usage",
    "breaker_for",
    "counts_as_down",
    "describe_failure",
    "encode_body",
    "endpoint_of",
    "normalize_base_url",
    "parse_chat_logprobs",
    "parse_legacy_logprobs",
    "parse_logprobs",
    "rejected_field",
    "rejection_error",
    "reset_breakers",
]

log = logging.getLogger(__name__)


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
        self.session = session if session is not None else new_session()
        self.breaker = breaker if breaker is not None else breaker_for(config)
        self.sleep = sleep if sleep is not None else self.breaker.pause
        self.rng = rng if rng is not None else random.Random()
        self.usage = Usage()
        #: copies a simulation's shared prompt prefix into every slot of a live llama-server
        #: (`vse.llm.slots`); set by `vse.method.llm.LLM.from_client`, None elsewhere
        self.warmer: SlotWarmer | None = None
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
            raise LLMResponseError(url, f"unreadable logprobs ({exc!r})", snippet(json.dumps(choice))) from exc
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
            raise LLMResponseError(url, f"unreadable logprobs ({exc!r})", snippet(json.dumps(choice))) from exc
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
                    snippet(text),
                )
            if text.startswith(prompt):
                text = text[len(prompt) :]
            if tokens and logprobs is not None and echo_is_shifted(tokens, usage):
                tokens, offsets = unshift_echo(tokens, offsets, prompt + text, logprobs)
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

    def get_json(self, path: str) -> dict[str, Any]:
        """GET ``{base_url}/{path}`` (e.g. ``models``) and return its JSON object.

        Goes through the same breaker, retries and errors as a completion, with two differences: it
        is not counted in `calls` (that counts completions), and a 200 that is not a JSON object is
        an error at once (a server without this path may answer it with a page; asking again won't help).
        """
        url = f"{self.config.base_url.rstrip('/')}/{path.lstrip('/')}"
        return self._send(url, None, json_object, completion=False)

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

    def _headers(self, *, body: bool = True) -> dict[str, str]:
        # A GET carries no body, so no Content-Type: its recorded request stays as it always was.
        headers = {"Content-Type": "application/json"} if body else {}
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
        return url, self._send(url, encode_body(payload), completion_body)

    def _send(
        self,
        url: str,
        data: bytes | None,
        read: Callable[[str, requests.Response], dict[str, Any]],
        *,
        completion: bool = True,
    ) -> dict[str, Any]:
        """The retry loop: POST ``data`` (GET when None) until ``read`` accepts a reply, or raise.

        A completion counts one call on every way out but an exception from below (a cassette miss, a
        bug), and a malformed 200 is retried like a 503.
        """
        attempts = self.config.max_retries + 1
        failure = Failure(None, "")
        for attempt in range(attempts):
            self.breaker.check(self.config.base_url)  # an endpoint known to be down: fail now, not after retries
            outcome = self._attempt(url, data, read, retry_malformed=completion and attempt + 1 < attempts)
            if isinstance(outcome, Failure):
                failure = outcome
                if attempt + 1 < attempts:
                    self._wait_to_retry(url, attempt, attempts, failure)
                continue
            if completion:
                self._count_call()
            if isinstance(outcome, LLMError):
                raise outcome
            return outcome
        if completion:
            self._count_call()
        raise LLMRetriesExhausted(url, attempts, failure.status, failure.error)

    def _attempt(
        self,
        url: str,
        data: bytes | None,
        read: Callable[[str, requests.Response], dict[str, Any]],
        *,
        retry_malformed: bool,
    ) -> dict[str, Any] | Failure | LLMError:
        """One request: the reply as ``read`` reads it, the failure to retry, or the error to raise."""
        try:
            resp = self._request(url, data)
        except (requests.ConnectionError, requests.Timeout) as exc:
            failure = connection_failure(exc, self.config.timeout_s)
            if failure.connection and self.breaker.failure(failure.error):
                return self.breaker.error(self.config.base_url)
            return failure
        except LLMError:
            raise
        except Exception as exc:
            miss = translate_vcr_error(exc)  # vcrpy's replay miss, raised from inside requests
            if miss is not None:
                raise miss from exc
            raise
        self.breaker.reachable()
        if resp.status_code >= 400:
            return http_failure(resp, url)
        try:
            return read(url, resp)
        except LLMResponseError as exc:
            # A 200 that is not a completion (a proxy's HTML page, an empty `choices`) is a server
            # fault like a 503: retry it. The cassette layer never stores such a reply, so while
            # recording the retry reaches the server.
            return Failure(resp.status_code, str(exc)) if retry_malformed else exc

    def _request(self, url: str, data: bytes | None) -> requests.Response:
        if data is None:
            return self.session.get(url, headers=self._headers(body=False), timeout=self.timeout)
        return self.session.post(url, data=data, headers=self._headers(), timeout=self.timeout)

    def _wait_to_retry(self, url: str, attempt: int, attempts: int, failure: Failure) -> None:
        wait = self._backoff(attempt, failure.retry_after, connection=failure.connection)
        log.warning(
            "vse: %s %s; retry %d/%d in %.1f s", where(url), failure.describe(), attempt + 1, attempts - 1, wait
        )
        self.sleep(wait)
