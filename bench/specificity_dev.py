"""Development measurement for issue 32: the specificity study's configurations (and a few more) replayed on
the defaults study's recorded candidates (48 units already used, so development data), no LLM call.

    .venv/bin/python bench/specificity_dev.py

Prints, per (layer, target, configuration): own explanation ranked first, mean rank, matched score, own >
others and p, on held-out halves (`vse.studies.specificity_study.compare_configs`, the study's own code).
With --ceiling it also prints, per cell, what the best single direction of the embedding space can do (a
ridge fit of the unit's held-in values on the item embeddings, scored on the held-out half): a bound on what
any explanation text can reach under the embedding scorer. That one uses NumPy's BLAS: a development
number, never a recorded one.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from vse.core import exact
from vse.core.discrimination import match
from vse.core.stats import correlation_score
from vse.core.target import neuron_id
from vse.core.vocab import Display, Pick
from vse.data.loader import load_target
from vse.method.best_of import split_unseen, unseen_items
from vse.method.records import ExplanationRecord
from vse.method.simulators.embedding import EmbeddingStore, cosine_predictions
from vse.paths import data_root
from vse.studies.registry import EXPERIMENTS
from vse.studies.specificity_study import CONFIGS, Config, SpecificityStudy, compare_configs

T, H = Display.TOP, Display.HELDOUT
DEV_CONFIGS = (
    *CONFIGS,
    Config("top-8", (T,), 8, Pick.HELD_IN),
    Config("pooled-8+8", (T, H), 8, Pick.HELD_IN),
    Config("pooled-8+8-specific", (T, H), 8, Pick.SPECIFIC),
)


def bar(study: SpecificityStudy, layer: str, units: list[int], target: str, records, store, choices) -> str:
    """What the own explanation has to beat to rank first: the best of the others' scores on its held-out half."""
    ts = [load_target(neuron_id(study.model, layer, u), target) for u in units]
    halves = [
        split_unseen(unseen_items(t.strength, records[u, T] + records[u, H], target, 25), study.split_seed, u)
        for u, t in zip(units, ts, strict=True)
    ]
    texts = ts[0].texts
    chosen = [c.explanation for c in choices if c.config == "top-4"]
    pred = [cosine_predictions(store, e, texts) for e in chosen]
    n = len(units)
    own, best, spread = [], [], []
    for j in range(n):
        out = halves[j][1]
        col = [correlation_score(pred[i][out], ts[j].values[out]) for i in range(n)]
        others = [x for i, x in enumerate(col) if i != j]
        own.append(col[j])
        best.append(max(others))
        spread.append(exact.std(others))
    return (
        f"top-4: own {exact.mean(own):.1f}, best of the {n - 1} others {exact.mean(best):.1f} "
        f"(others' SD {exact.mean(spread):.1f}), {len(halves[0][1])} held-out items"
    )


def ceiling(study: SpecificityStudy, layer: str, units: list[int], target: str, records, store, lam: float) -> str:
    ts = [load_target(neuron_id(study.model, layer, u), target) for u in units]
    emb = store.embed(list(ts[0].texts))
    halves = [
        split_unseen(unseen_items(t.strength, records[u, T] + records[u, H], target, 25), study.split_seed, u)
        for u, t in zip(units, ts, strict=True)
    ]
    directions = []
    for t, (h, _) in zip(ts, halves, strict=True):
        x = emb[h] - emb[h].mean(0)
        y = t.values[h] - t.values[h].mean()
        directions.append(np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y))
    pred = [emb @ d for d in directions]
    n = len(units)
    s = np.array(
        [[correlation_score(pred[i][halves[j][1]], ts[j].values[halves[j][1]]) for j in range(n)] for i in range(n)]
    )
    m = match(s)
    return f"ridge ceiling (lambda {lam:g}): rank1 {m.rank1}/{n}, mean rank {m.mean_rank:.2f}, " + (
        f"matched {m.matched_mean:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ceiling", action="store_true")
    ap.add_argument("--neighbours", type=int, default=10)
    ap.add_argument(
        "--split-seeds",
        type=int,
        default=0,
        help="instead: rank 1 of the held-in configurations over this many held-in/held-out draws (seeds 0..N-1)",
    )
    args = ap.parse_args()
    dev = EXPERIMENTS["defaults-study"]
    study = SpecificityStudy(n_candidates=8, configs=DEV_CONFIGS, n_neighbours=args.neighbours)
    store = EmbeddingStore(data_root() / "cassettes" / dev.name / "embeddings.npz")
    by: dict[tuple[str, str], list[ExplanationRecord]] = {}
    with open(data_root() / "results" / dev.name / "explanations.jsonl") as f:
        for line in f:
            r = ExplanationRecord.from_json(json.loads(line))
            by.setdefault((r.neuron, str(r.display)), []).append(r)
    for layer, n in dev.layers:
        units = dev.units(layer, n)
        records = {(u, d): by[neuron_id(dev.model, layer, u), str(d)] for u in units for d in (T, H)}
        if args.split_seeds:
            plain = replace(study, configs=tuple(c for c in DEV_CONFIGS if c.pick == Pick.HELD_IN))
            for target in dev.targets:
                counts: dict[str, list[int]] = {}
                for split in range(args.split_seeds):
                    rows, _ = compare_configs(replace(plain, split_seed=split), layer, units, target, records, store)
                    for r in rows:
                        counts.setdefault(r.config, []).append(r.rank1)
                for config, c in counts.items():
                    print(
                        f"{layer:10s} {target:18s} {config:12s} rank1 over {len(c)} splits: "
                        f"mean {sum(c) / len(c):.1f}, min {min(c)}, max {max(c)}",
                        flush=True,
                    )
            continue
        for target in dev.targets:
            rows, choices = compare_configs(replace(study), layer, units, target, records, store)
            for r in rows:
                print(
                    f"{layer:10s} {target:18s} {r.config:20s} rank1 {r.rank1:2d}/{r.n_neurons} "
                    f"mean rank {r.mean_rank:5.2f} matched {r.matched_mean:4.1f} mismatched {r.mismatched_mean:4.1f} "
                    f"own>others {r.wins:2d} p {r.p_value:.2g} "
                    f"Meta-AUPRC {r.meta_auprc:.3f} (hard {r.meta_auprc_hard:.3f}) "
                    f"calls {r.calls_per_unit:.0f}",
                    flush=True,
                )
            if args.ceiling:
                print(f"{layer:10s} {target:18s} {bar(study, layer, units, target, records, store, choices)}")
                print(f"{layer:10s} {target:18s} {ceiling(study, layer, units, target, records, store, 10.0)}")


if __name__ == "__main__":
    main()
