"""vse.llm.pricing: the chars-per-token ratio recomputed from the recorded cassette, and the dry-run arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vse.llm.batch import requests_from_cassette
from vse.llm.cassettes import GzipJsonPersister, _JsonSerializer
from vse.llm.pricing import CHARS_PER_TOKEN, CHAT_TOKENS_PER_MESSAGE, dry_run, paper_cost

REPO = Path(__file__).resolve().parents[2]
# The issue-3 recording (unit 1089, 3,190 calls), kept in bench/data/ as real traffic to measure on.
CASSETTE = REPO / "bench/data/issue3-unit1089.json.gz"
CONFIG = REPO / "bench/data/issue3-unit1089-config.json"


@pytest.fixture(scope="module")
def recorded():
    reqs = requests_from_cassette(CASSETTE)
    _, responses = GzipJsonPersister.load_cassette(CASSETTE, _JsonSerializer)[:2]
    return reqs, [json.loads(r["body"]["string"])["usage"] for r in responses]


def test_ratio_is_the_one_measured_on_real_usage(recorded):
    reqs, usage = recorded
    measured = sum(len(p["prompt"]) for _, p in reqs) / sum(u["prompt_tokens"] for u in usage)
    assert CHARS_PER_TOKEN == pytest.approx(measured, abs=0.001)


def test_dry_run_of_the_recorded_requests_matches_the_real_run(recorded):
    reqs, _ = recorded
    real = json.loads(CONFIG.read_text())["usage"]
    est = dry_run(reqs, price_per_1k=0.002)
    assert est.calls == real["calls"]
    assert est.prompt_tokens == pytest.approx(real["prompt_tokens"], rel=0.005)
    assert est.max_completion_tokens >= real["completion_tokens"]
    assert est.price == pytest.approx((est.prompt_tokens + est.max_completion_tokens) / 1000 * 0.002)


def test_chat_and_list_prompts_and_no_price():
    chat = (
        "chat/completions",
        {
            "messages": [{"role": "system", "content": "a" * 288}, {"role": "user", "content": "b" * 288}],
            "max_tokens": 7,
        },
    )
    comp = ("completions", {"prompt": ["c" * 10, "d"], "max_tokens": None})
    est = dry_run([chat, comp])
    assert est.calls == 2 and est.prompt_chars == 587
    assert est.prompt_tokens == 200 + 2 * CHAT_TOKENS_PER_MESSAGE + 4  # ceil(11 / 2.88) = 4
    assert est.max_completion_tokens == 7 and est.price is None


def test_paper_formula():
    # Sec. 3.2.3: 4096 * 25 * 2.5 * 0.0015 (the paper prints 389; the product is 384)
    assert paper_cost(4096) == pytest.approx(384.0)
    assert paper_cost(10, calls_per_neuron=2, avg_prompt_ktokens=1, price_per_1k=1) == 20
