"""Does the one-item simulator need its follow-up call for the 1-versus-10 split?

Qwen writes 10 as "1","0", so the first token "1" means 1 or 10. Until now a follow-up call on
``prompt + "1"`` read P("0" | "1") on almost every item (the mass on "1" is rarely small): two
calls per item. This benchmark replays the recorded issue-3 experiment (unit 1089, 4
explanations x 8 passes x 50 classes, with the follow-ups; `bench/data/`) and recomputes every
prediction both ways from the recorded replies: with the split (the recorded values) and with
"1" counted as 1 (`ten_followup=False`, vse's default now, one call per item). It prints how
close the predictions are and how every pass score moves. Offline, seconds.

    python bench/followup.py
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from vse.core.stats import correlation_score
from vse.method.simulators.numbers import read_value

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    cassette = json.loads(gzip.decompress((DATA / "issue3-unit1089.json.gz").read_bytes()))
    # First calls (prompt ends in a tab) in recorded order = the items in execution order.
    firsts, follows = [], 0
    for it in cassette["interactions"]:
        body = json.loads(it["request"]["body"])
        if "prompt" not in body or body.get("max_tokens") != 1:
            continue
        if body["prompt"].endswith("\t1"):
            follows += 1
            continue
        firsts.append(json.loads(it["response"]["body"]["string"])["choices"][0]["logprobs"]["top_logprobs"][0])
    records = [
        json.loads(line)
        for line in gzip.decompress((DATA / "issue3-unit1089-results.jsonl.gz").read_bytes()).decode().splitlines()
    ]
    passes = [(r["method"], r["explanation_seed"], p) for r in records for p in r["passes"]]
    assert sum(len(p["predicted"]) for _, _, p in passes) == len(firsts), "cassette and results disagree"
    it = iter(firsts)
    recorded, single, rows = [], [], []
    for method, seed, p in passes:
        one = []
        for _ in p["predicted"]:
            top = next(it)
            one.append(read_value(lambda s, top=top: top if s == "" else None, signed=False, ten_followup=False).value)
        recorded += p["predicted"]
        single += one
        rows.append((method, seed, correlation_score(p["predicted"], p["true"]), correlation_score(one, p["true"])))
    a, b = np.array(recorded), np.array(single)
    print(
        f"items: {len(firsts)}; calls with the split: {len(firsts) + follows}; without: {len(firsts)} "
        f"({len(firsts) / (len(firsts) + follows):.0%})"
    )
    print(
        f"predictions with vs without the split: Pearson r = {np.corrcoef(a, b)[0, 1]:.4f}; mean |difference| = "
        f"{np.abs(a - b).mean():.3f} (0..10 scale)"
    )
    d = np.array([r[3] - r[2] for r in rows])
    print(
        f"pass scores ({len(rows)}): without minus with the split: mean {d.mean():+.2f}, mean |.| "
        f"{np.abs(d).mean():.2f}, max |.| {np.abs(d).max():.2f}"
    )
    for key in dict.fromkeys((r[0], r[1]) for r in rows):
        mine = [r for r in rows if (r[0], r[1]) == key]
        print(
            f"  {key[0]} seed {key[1]}: mean score {np.mean([r[2] for r in mine]):+.2f} with the split (recorded), "
            f"{np.mean([r[3] for r in mine]):+.2f} without"
        )


if __name__ == "__main__":
    main()
