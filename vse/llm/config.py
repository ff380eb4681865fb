"""Where and how to call the LLM: the base URL, the model, the key, timeouts, retries and the breaker's limits.

`ClientConfig.from_env` is the one place options are resolved against the environment, and
`normalize_base_url` the one place a base URL is checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse, urlsplit, urlunsplit

#: The local server `vse llm serve` starts, used when neither an option nor the environment names one.
DEFAULT_BASE_URL = "http://127.0.0.1:8765/v1"
OPENAI_HOST = "api.openai.com"


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


#: Hosts that are this machine: a server there that keeps a connection open is alive.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: The read timeout for a server on this machine (`ClientConfig.from_env`).
LOCAL_TIMEOUT_S = 900.0


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
        overrides: other fields (timeout_s, max_retries, ...). Without a timeout_s, a server on this
            machine gets `LOCAL_TIMEOUT_S`: a loopback server that has died refuses the connection at
            once, so one that keeps it open is busy, not dead (a cold 2-core llama-server may queue a
            request for minutes), and a second copy of the request would only make it busier.
        """
        env = os.environ
        url = base_url or env.get("VSE_BASE_URL") or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = api_key or env.get("VSE_API_KEY") or None
        if key is None and (allow_openai_key_elsewhere or _host(url) == OPENAI_HOST):
            key = env.get("OPENAI_API_KEY") or None
        if "timeout_s" not in overrides and _host(url) in LOOPBACK_HOSTS:
            overrides["timeout_s"] = LOCAL_TIMEOUT_S
        return cls(
            base_url=normalize_base_url(url), model=model or env.get("VSE_MODEL") or "local", api_key=key, **overrides
        )


def endpoint_of(url: str) -> str:
    """``scheme://host:port`` of a URL, without credentials or path: what one server answers on."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}"


def where(url: str) -> str:
    """``host:port`` of a URL, for one-line messages."""
    return urlsplit(url).netloc.rpartition("@")[2] or url
