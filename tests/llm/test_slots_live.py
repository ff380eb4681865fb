"""Against the real llama-server (`make smoke`): a prefix warmed once is cached in every slot."""

from __future__ import annotations

import json

import pytest
import requests

from vse.llm.server import LocalServer, assemble_model
from vse.llm.slots import SlotWarmer

pytestmark = pytest.mark.live

PREFIX = "Units of a vision model and the classes they support most:\n" + "".join(
    f"class {k}\tweight {k % 10}\n" for k in range(60)
)


def test_a_warmed_prefix_is_reused_by_another_slot():
    with LocalServer(assemble_model(), port=0, slots=4) as server:
        session = requests.Session()
        warmer = SlotWarmer.probe(session, server.base_url)
        assert warmer is not None and warmer.slots == 4
        assert warmer.warm(PREFIX) and warmer.enabled
        # A request pinned to slot 3, which never saw a request: its prompt cache holds the prefix.
        body = {"prompt": PREFIX + "class 61\t", "max_tokens": 1, "temperature": 0.0, "id_slot": 3}
        reply = session.post(f"{server.base_url}/completions", data=json.dumps(body), timeout=300).json()
        cached = reply["timings"]["cache_n"]
        assert cached >= 0.9 * reply["usage"]["prompt_tokens"], reply["timings"]
