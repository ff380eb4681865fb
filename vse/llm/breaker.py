"""The process-wide circuit breaker: connection failures in a row at one endpoint, counted over every
client and thread, so a run with many workers stops within seconds of the server going away."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vse.llm.config import endpoint_of, where
from vse.llm.errors import LLMEndpointDown

if TYPE_CHECKING:
    from vse.llm.config import ClientConfig

# Named after the client, whose warnings these were before the split: log filters keep working.
log = logging.getLogger("vse.llm.client")


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
                    where(self.endpoint),
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
