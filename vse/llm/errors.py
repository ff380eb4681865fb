"""Errors raised by the LLM client and the cassette layer; all share the base `LLMError`.

Each error names what failed and where (the URL, the cassette file), never the API key.
"""

from __future__ import annotations


class LLMError(Exception):
    """Base class of every error raised by `vse.llm`."""


class LLMHTTPError(LLMError):
    """The server answered with a status that retrying cannot fix (a 4xx other than 408/409/429)."""

    def __init__(self, status: int, message: str, url: str) -> None:
        self.status = status
        self.message = message
        self.url = url
        super().__init__(f"HTTP {status} from {url}: {message}")


class LLMEndpointRejected(LLMHTTPError):
    """HTTP 401, 403 or 404: the endpoint refuses every request of this kind (a wrong key, a wrong
    base URL or path, a model it does not serve), not this one request. A run stops on it."""

    hint = (
        "check --base-url (an OpenAI-compatible API ends in /v1), the API key (VSE_API_KEY / OPENAI_API_KEY) "
        "and --model"
    )


class LLMRetriesExhausted(LLMError):
    """Every attempt failed with a retryable status or a connection error/timeout."""

    def __init__(self, url: str, attempts: int, last_status: int | None, last_error: str) -> None:
        self.url = url
        self.attempts = attempts
        self.last_status = last_status
        self.last_error = last_error
        what = f"HTTP {last_status}: {last_error}" if last_status is not None else last_error
        super().__init__(f"gave up on {url} after {attempts} attempts; last error: {what}")


class LLMEndpointDown(LLMError):
    """The endpoint is plainly down: connections to it failed several times in a row, across every
    client and thread of this process (the circuit breaker in `vse.llm.client` is open).

    Raised at once, without waiting, by every call to that endpoint until the breaker's cool-down
    has passed, so a run with many workers stops within seconds instead of retrying unit by unit.
    """

    def __init__(self, endpoint: str, failures: int, reason: str, url: str = "") -> None:
        self.endpoint = endpoint
        self.failures = failures
        self.reason = reason
        self.url = url or endpoint
        super().__init__(
            f"the LLM endpoint {self.url} is down: {failures} connection attempts in a row failed "
            f"({reason}); start the server (vse llm serve) or name a running one (--base-url / VSE_BASE_URL)"
        )


class LLMResponseError(LLMError):
    """The server answered 200 but the body is not a completion (not JSON, no choices, ...)."""

    def __init__(self, url: str, problem: str, snippet: str) -> None:
        self.url = url
        self.problem = problem
        self.snippet = snippet
        super().__init__(f"malformed reply from {url}: {problem}; body starts: {snippet!r}")


class CassetteMiss(LLMError):
    """A request that the cassette (replay-only) has not recorded.

    Deliberately an `LLMError`, but code that records failed LLM calls as failures in the
    results must re-raise this one: a cassette miss means the code or the prompts changed
    since recording, not that the LLM failed.
    """

    def __init__(self, cassette: str, method: str, path: str, body: str, detail: str = "") -> None:
        self.cassette = cassette
        self.method = method
        self.path = path
        self.body = body
        self.detail = detail
        preview = body if len(body) <= 200 else body[:200] + f"... ({len(body)} characters)"
        message = (
            f"request not recorded in cassette {cassette}: {method} {path}"
            + (f" body: {preview}" if body else "")
            + "\n"
            "Re-record it (record=True, e.g. `make record`) if the prompts changed on purpose."
        )
        if detail:
            message += "\n" + detail
        super().__init__(message)


class CassetteError(LLMError):
    """A cassette file that cannot be read: cut short, a damaged gzip, not JSON, or not a cassette.

    Raised instead of the zlib/gzip/JSON error underneath, which would not name the file.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"cassette {path} is unreadable ({problem}); restore it (git checkout -- {path}) or re-record it"
        )


class ModelAssemblyError(LLMError):
    """The local model file could not be assembled from its PyPI part wheels."""


class ServerStartError(LLMError):
    """The local llama.cpp server did not come up."""


class RequestDeferred(Exception):
    """A request held back to be sent in a Batch API file (`vse.llm.batch.CollectingClient`), not sent now.

    Not an `LLMError` on purpose: nothing that handles a failed call (a retry, an unreadable prediction)
    may treat it as one. The one-item simulator still asks for the other items of a pass, so that one
    collection finds every request of the pass (`vse.method.simulators.one_item`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"request to {path} held back for the Batch API")
