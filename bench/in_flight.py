"""Predictions in flight against the local llama-server: items/s at 1, 2 and 4 in flight, and
the wall time of one scored explanation (Algorithm 1) at 1 and at 4.

    python bench/in_flight.py [--items 40] [--rounds 3] [--score] [--slots 4]

Starts its own `LocalServer` (``$VSE_LLAMA_SERVER`` or vse's cached build) on a free port, sends
nothing through a cassette, and prints one markdown table. Rounds interleave the settings (1, 2,
4, 1, 2, 4, ...) so load from other processes falls on all of them alike; every round predicts the
same items for the same explanation with an empty store, as a study does per explanation. It also
says how far the values at 2 and 4 in flight are from those at 1: llama-server batches the slots'
tokens together, and a batch of another size may round differently.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from vse.core import seeds  # noqa: E402
from vse.core.stats import StopRule  # noqa: E402
from vse.data.loader import load_target  # noqa: E402
from vse.llm.client import ClientConfig, LLMClient  # noqa: E402
from vse.llm.server import LocalServer, assemble_model  # noqa: E402
from vse.method.fewshot import fewshot_neurons  # noqa: E402
from vse.method.prediction_store import PredictionStore  # noqa: E402
from vse.method.score import ScoreConfig, fewshot_examples, predict_items, score_target  # noqa: E402

NEURON = "efficientnet_lite0/_conv_head/100"
TARGET = "weight-label"
EXPLANATION = "dogs, especially terriers and other small breeds"
SETTINGS = (1, 2, 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--score", action="store_true", help="also time one scored explanation at 1 and 4 in flight")
    args = ap.parse_args(argv)

    target = load_target(NEURON, TARGET)
    fewshot = fewshot_neurons(NEURON, TARGET)
    config = ScoreConfig()
    examples = fewshot_examples(fewshot, config, seeds.rng(0, "fewshot"))
    items = np.random.default_rng(0).choice(len(target.texts), size=args.items, replace=False)
    texts = [target.texts[i] for i in items]
    load = os.getloadavg()[0]
    with LocalServer(assemble_model(), port=0, slots=args.slots) as server:
        client = LLMClient(ClientConfig(base_url=server.base_url, max_retries=0))

        def run(in_flight: int) -> tuple[float, list[float]]:
            t = time.perf_counter()
            sim = predict_items(
                client,
                EXPLANATION,
                texts,
                kind=TARGET,
                examples=examples,
                config=config,
                store=PredictionStore(),
                in_flight=in_flight,
            )
            return time.perf_counter() - t, sim.values

        run(1)  # warm-up: the few-shot prefix into the server's cache
        seconds: dict[int, list[float]] = {n: [] for n in SETTINGS}
        values: dict[int, list[list[float]]] = {n: [] for n in SETTINGS}
        for r in range(args.rounds):
            for n in SETTINGS:
                s, v = run(n)
                seconds[n].append(s)
                values[n].append(v)
                print(f"round {r}: {n} in flight: {args.items / s:.2f} items/s", file=sys.stderr)
        ref = np.array(values[1][0])
        print(
            f"\n{server.build.describe()}; {args.items} one-item predictions per run, {args.rounds} rounds; load "
            f"average at start {load:.2f} on {os.cpu_count()} CPUs\n"
        )
        print("| in flight | items/s (median) | runs | max abs diff vs 1 in flight | mean abs diff |")
        print("|---|---|---|---|---|")
        for n in SETTINGS:
            diffs = np.abs(np.array(values[n]) - ref)
            rate = args.items / statistics.median(seconds[n])
            print(
                f"| {n} | {rate:.2f} | {', '.join(f'{args.items / s:.2f}' for s in seconds[n])} | {diffs.max():.4f} | "
                f"{diffs.mean():.4f} |"
            )

        if args.score:
            print(
                "\n| one scored explanation (Algorithm 1, uniform, 50 items a pass) | wall s | passes | calls | score |"
            )
            print("|---|---|---|---|---|")
            for n in (1, 4):
                t = time.perf_counter()
                res = score_target(
                    client,
                    EXPLANATION,
                    target,
                    fewshot,
                    ScoreConfig(stop=StopRule(max_runs=5)),
                    seed=0,
                    store=PredictionStore(),
                    progress=False,
                    in_flight=n,
                )
                print(
                    f"| {n} in flight | {time.perf_counter() - t:.1f} | {res.passes} | {res.calls} | {res.mean:.2f} ± "
                    f"{res.half_width:.2f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
