"""Warm every slot of a llama-server with one prompt prefix, computed once.

A one-item simulation sends hundreds of prompts that share a long prefix (the few-shot examples
and the explanation, ~600-800 tokens) and differ in a few tokens at the end. llama-server keeps a
prompt cache per slot, so after its first request a slot computes only the new tokens. But a cold
server with 8 slots, sent 8 requests at once, computes the shared prefix 8 times, one copy per
slot, at ~40 prompt tokens/s on 2 CPU cores: minutes before the first prediction comes back,
with the queued requests past the client's read timeout. Every new explanation pays part of it
again. (A unified KV cache alone does not share it: measured, 118.5 s vs 112 s for 7 requests.)

`SlotWarmer.warm(prefix)` computes the prefix once, in slot 0 (a one-token completion pinned
there with ``id_slot``), saves that slot's cache to a file (``POST /slots/0?action=save``, ~0.01 s,
~23 MB) and restores it into every other slot (``action=restore``, ~0.01 s each). llama-server
then gives each later request an idle slot whose cache holds the prefix, and computes only the
item's tokens. It needs a server started with ``--slot-save-path`` (vse's `LocalServer` is).

These requests are not part of any result: they carry the `UNRECORDED` header, which the
cassette layer drops (`vse.llm.cassettes.scrub_request`), so a recording is the same with or
without them and a replay never sends them. Warming is best effort: the first request or answer
that is not what llama-server gives (another server, a server without a slot-save path, a replay)
switches the warmer off for the run, with one line in the log; predictions go on unwarmed.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import requests

log = logging.getLogger(__name__)

#: A request with this header never reaches a cassette (vse.llm.cassettes.scrub_request).
UNRECORDED = "X-Vse-Unrecorded"
#: The file, under the server's slot-save path, that carries a warm slot into the others.
SLOT_FILE = "vse-warm-prefix.bin"


class SlotWarmer:
    """Fills one slot of a llama-server with a prefix and copies it into the others (see module doc).

    root: the server's root URL (``http://127.0.0.1:8765``, no ``/v1``); slots: how many it has.
    """

    def __init__(self, session: requests.Session, root: str, slots: int, *, timeout_s: float = 600.0) -> None:
        self.session = session
        self.root = root.rstrip("/")
        self.slots = slots
        self.timeout_s = timeout_s
        self.enabled = slots > 1
        self.warmed = 0  # prefixes copied into every slot
        self._last: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def probe(cls, session: requests.Session, base_url: str) -> SlotWarmer | None:
        """A warmer for the llama-server at ``base_url`` (``.../v1``), or None when ``GET /slots``
        does not answer with a list of slots (another server, a replay, no network)."""
        root = base_url.rstrip("/").removesuffix("/v1")
        try:
            resp = session.get(f"{root}/slots", headers={UNRECORDED: "slots"}, timeout=(2.0, 5.0))
            slots = resp.json() if resp.status_code == 200 else None
        except Exception:  # noqa: BLE001 - any failure means: not a llama-server we can warm
            return None
        if not isinstance(slots, list) or len(slots) < 2:
            return None
        return cls(session, root, len(slots))

    def warm(self, prefix: str) -> bool:
        """Compute ``prefix`` once and copy it into every slot; True when done (or already done for it)."""
        with self._lock:
            if not self.enabled:
                return False
            if prefix == self._last:
                return True
            try:
                self._post(
                    "/v1/completions",
                    {"prompt": prefix, "max_tokens": 1, "temperature": 0.0, "id_slot": 0, "cache_prompt": True},
                )
                self._post("/slots/0?action=save", {"filename": SLOT_FILE})
                for slot in range(1, self.slots):
                    self._post(f"/slots/{slot}?action=restore", {"filename": SLOT_FILE})
            except _Refused as err:
                self.enabled = False
                log.info("vse: llama-server slots not warmed (%s); predictions go on without it", err)
                return False
            self._last = prefix
            self.warmed += 1
            return True

    def _post(self, path: str, body: dict[str, Any]) -> None:
        try:
            resp = self.session.post(
                self.root + path,
                data=json.dumps(body).encode("utf-8"),
                headers={"Content-Type": "application/json", UNRECORDED: "warm-up"},
                timeout=(5.0, self.timeout_s),
            )
        except requests.RequestException as exc:
            raise _Refused(f"{path}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise _Refused(f"{path} answered {resp.status_code}")


class _Refused(Exception):
    """A warm-up request that did not do what llama-server does."""
