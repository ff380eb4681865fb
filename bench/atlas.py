"""Page weight and load/sort time of a whole-layer atlas (1280 units of EfficientNet-Lite0's _conv_head).

The labels are SYNTHETIC (generated text and random scores, clearly named "synthetic ..."): this measures the
site's size and speed only, never what any unit does. Images are the committed fixtures' probe thumbnails.
Needs Debian's chromium (apt-get install -y chromium).

    .venv/bin/python bench/atlas.py [--units 1280] [--out build/atlas-bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import find_chromium, run_check  # noqa: E402

from vse.outputs.atlas import build_atlas  # noqa: E402


def synthetic_labels(path: Path, units: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as f:
        for u in range(units):
            neuron = f"efficientnet_lite0/_conv_head/{u}"
            text = f"synthetic explanation {u}: " + " ".join(
                rng.choice(["red", "round", "animal", "tool", "water", "hat"], size=int(rng.integers(4, 16)))
            )
            items = [int(i) for i in rng.choice(700, 40, replace=False)]
            score = {
                "neuron": neuron,
                "method": "caption-activation",
                "polarity": "positive",
                "explanation": text,
                "target": "caption-activation",
                "mean": float(rng.normal(10, 15)),
                "half_width": float(rng.uniform(2, 8)),
                "passes": int(rng.integers(3, 16)),
                "hit_cap": False,
                "provenance": {"protocol": "uniform"},
                "details": [
                    {
                        "items": items,
                        "true": [int(x) for x in rng.integers(0, 11, 40)],
                        "predicted": [float(x) for x in rng.random(40) * 10],
                    }
                ],
            }
            rec = {
                "unit": u,
                "neuron": neuron,
                "method": "caption-activation",
                "target": "caption-activation",
                "explanations": [
                    {
                        "neuron": neuron,
                        "method": "caption-activation",
                        "polarity": "positive",
                        "explanation": text,
                        "calls": 1,
                        "completion_tokens": int(rng.integers(8, 40)),
                    }
                ],
                "scores": [score],
            }
            f.write(json.dumps(rec) + "\n")


SORT = r"""
var t = document.getElementById('units'), q = document.getElementById('q');
var th = t.querySelector('th[data-key="score-0"]');
// each time includes the layout it forces (offsetHeight), not only the script
var t0 = performance.now(); th.click(); void document.body.offsetHeight; var sort1 = performance.now() - t0;
t0 = performance.now(); th.click(); void document.body.offsetHeight; var sort2 = performance.now() - t0;
t0 = performance.now(); q.value = 'animal water'; q.dispatchEvent(new Event('input'));
void document.body.offsetHeight; var search = performance.now() - t0;
return {ready: +document.documentElement.getAttribute('data-ready-ms'),
        sort_desc_ms: sort1, sort_asc_ms: sort2, search_ms: search,
        rows: t.tBodies[0].rows.length, shown: +t.getAttribute('data-shown')};
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1280)
    ap.add_argument("--out", type=Path, default=Path("build/atlas-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    labels = args.out.parent / f"{args.out.name}-synthetic-labels.jsonl"
    synthetic_labels(labels, args.units)
    t0 = time.perf_counter()
    summary = build_atlas([labels], args.out)
    build_s = time.perf_counter() - t0
    cards = sorted((args.out / "cards").glob("*.html"))
    card_kb = [p.stat().st_size / 1e3 for p in cards]
    imgs = list((args.out / "img").rglob("*.*"))
    print(f"build: {build_s:.1f} s; {summary}")
    print(
        f"index.html {summary.index_bytes / 1e3:.0f} kB; assets "
        f"{sum(p.stat().st_size for p in (args.out / 'assets').iterdir()) / 1e3:.1f} kB; "
        f"card pages median {statistics.median(card_kb):.1f} kB (max {max(card_kb):.1f}); {len(imgs)} image files, "
        f"{sum(p.stat().st_size for p in imgs) / 1e6:.2f} MB"
    )
    if find_chromium() is None:
        print("no chromium: load and sort times not measured")
        return
    runs = []
    for _ in range(args.repeats):
        runs.append(json.loads(run_check(args.out / "index.html", SORT, eager=False)))
    for key in ("ready", "sort_desc_ms", "sort_asc_ms", "search_ms"):
        vals = [r[key] for r in runs]
        print(f"index {key}: median {statistics.median(vals):.0f} ms (runs: {', '.join(f'{v:.0f}' for v in vals)})")
    print(f"rows {runs[0]['rows']}, shown after search {runs[0]['shown']}")
    card = cards[len(cards) // 2]
    ready = [
        json.loads(run_check(card, "return +document.documentElement.getAttribute('data-ready-ms');", eager=True))
        for _ in range(args.repeats)
    ]
    print(
        f"card {card.name}: scripts done at median {statistics.median(ready):.0f} ms with its 12 images loaded before "
        "the check"
    )


if __name__ == "__main__":
    main()
