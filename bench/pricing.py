"""Benchmark: dry-run estimate vs the real usage of the recorded experiment, and the paper's formula.

The requests are the recorded run's own (the issue-3 recording, ``bench/data/issue3-unit1089.json.gz``), i.e.
exactly what
the prompt builders produced; the real usage is ``bench/data/issue3-unit1089-config.json``.
CHARS_PER_TOKEN was fitted on this very cassette, so the total agrees by construction; the
held-out check (fit on even requests, predict odd) and the per-request errors say how far it carries.

    python -m bench.pricing [--price-per-1k-tokens 0.0015] [--neurons 1280]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from vse.llm.batch import requests_from_cassette
from vse.llm.cassettes import GzipJsonPersister, _JsonSerializer
from vse.llm.pricing import CHARS_PER_TOKEN, dry_run, estimate_tokens, paper_cost

REPO = Path(__file__).resolve().parents[1]
CASSETTE = REPO / "bench/data/issue3-unit1089.json.gz"
CONFIG = REPO / "bench/data/issue3-unit1089-config.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--price-per-1k-tokens", type=float, default=0.0015, help="the paper's GPT-3.5 price")
    ap.add_argument("--neurons", type=int, default=1280, help="layer size to extrapolate to (_conv_head: 1280)")
    args = ap.parse_args(argv)
    P = args.price_per_1k_tokens
    reqs = requests_from_cassette(CASSETTE)
    _, responses = GzipJsonPersister.load_cassette(CASSETTE, _JsonSerializer)[:2]
    real_tok = [json.loads(r["body"]["string"])["usage"]["prompt_tokens"] for r in responses]
    chars = [len(p["prompt"]) for _, p in reqs]
    usage = json.loads(CONFIG.read_text())["usage"]
    est = dry_run(reqs, price_per_1k=P)
    real_price = (usage["prompt_tokens"] + usage["completion_tokens"]) / 1000 * P
    errs = [abs(estimate_tokens("x" * c) - t) / t for c, t in zip(chars, real_tok, strict=True)]
    even = sum(chars[::2]) / sum(real_tok[::2])
    odd_pred = sum(c / even for c in chars[1::2])
    odd_err = (odd_pred - sum(real_tok[1::2])) / sum(real_tok[1::2])
    paper_one = paper_cost(1, price_per_1k=P)
    print(f"price {P} per 1k tokens; CHARS_PER_TOKEN = {CHARS_PER_TOKEN}\n")
    print(
        "| one neuron (unit 1089, weight-label, 3 explanations) | calls | prompt tokens | completion tokens | price |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| dry run (recorded requests, chars / {CHARS_PER_TOKEN}) | {est.calls} | {est.prompt_tokens} | "
        f"<= {est.max_completion_tokens} | {est.price:.2f} (upper bound) |"
    )
    print(
        f"| real (config.json usage) | {usage['calls']} | {usage['prompt_tokens']} | {usage['completion_tokens']} | "
        f"{real_price:.2f} |"
    )
    print(f"| paper formula (Sec. 3.2.3: 25 calls x 2.5k tokens) | 25 | 62500 | - | {paper_one:.4f} |")
    print()
    print(
        f"prompt tokens, dry run vs real: {(est.prompt_tokens - usage['prompt_tokens']) / usage['prompt_tokens']:+.3%} "
        f"(fitted on this cassette); per request |error| median {statistics.median(errs):.2%}, "
        f"max {max(errs):.2%}; fit on even requests -> odd requests' total {odd_err:+.3%}"
    )
    print(
        f"mean prompt length {usage['prompt_tokens'] / usage['calls']:.0f} tokens/call; "
        f"{usage['calls']} calls/neuron vs the paper's 25"
    )
    print(
        f"layer of {args.neurons}: real-run rate {real_price * args.neurons:.2f}; paper formula "
        f"{paper_cost(args.neurons, price_per_1k=P):.2f}; paper's AlexNet example 4096 x 25 x 2.5 x 0.0015 = "
        f"{paper_cost(4096):.2f} (printed as 389 in the paper)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
