"""The prediction store: one simulated value per (model, API, prompt prefix, item), kept in memory.

A one-item prediction depends only on the model and API, the prompt prefix (instruction, the
few-shot neurons as drawn, the explanation) and the item's text. Within a scoring run the few-shot
draw is fixed, so the same item under the same explanation is predicted at most once: every pass,
every protocol and every mismatched comparison (this explanation on another neuron's items)
reads the store instead of calling the LLM again.

The store is derived, never a source of truth: it is filled only from real replies (live, or
replayed from a cassette) and lives in memory for one process. A replay from cassettes alone
rebuilds it exactly, because the same calls replay the same replies; nothing is read from disk.

With predictions in flight (`OneItemSimulator.predict(..., in_flight=N)`) only the calling thread
reads and fills the store: it looks every item up first, sends the misses concurrently, and puts
the replies in item order, so the store ends up as one item after the other would leave it.
"""

from __future__ import annotations

import hashlib


class PredictionStore:
    """Maps (prefix identity, item text) to a predicted value; counts hits and misses."""

    def __init__(self) -> None:
        self._values: dict[str, float] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(prefix_id: str, item: str) -> str:
        return hashlib.sha256(f"{prefix_id}\x00{item}".encode()).hexdigest()

    def get(self, prefix_id: str, item: str) -> float | None:
        value = self._values.get(self.key(prefix_id, item))
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, prefix_id: str, item: str, value: float) -> None:
        self._values[self.key(prefix_id, item)] = float(value)

    def __len__(self) -> int:
        return len(self._values)
