"""Asking again for a reply that cannot be used: the one retry loop of the method.

An explanation with no usable sentence (`vse.method.explain.explain`) and a list reply that does
not parse (`vse.method.simulators.whole_list.simulate_list`) are both asked again a fixed number of
times, each attempt with its own seed, and give up with every attempt's reason. Failures of the
call itself (HTTP errors, cassette misses) are not retried here: `vse.llm.client` handles those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Rejected(Exception):
    """The reply of one attempt cannot be used (its message says why); the loop asks again."""


def first_usable(attempts: int, attempt: Callable[[int], T]) -> tuple[T | None, list[str]]:
    """``attempt(0)``, ``attempt(1)``, ... until one returns without raising `Rejected`.

    Returns that result (None when all ``attempts`` were rejected) and the reasons of the rejected
    attempts, in order. Any other exception propagates at once.
    """
    reasons: list[str] = []
    for k in range(attempts):
        try:
            return attempt(k), reasons
        except Rejected as err:
            reasons.append(str(err))
    return None, reasons
