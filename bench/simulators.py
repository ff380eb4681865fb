"""Benchmark: the simulator modes side by side on the same explanation, neuron and pass draws.

Runs Algorithm 1 once per mode against a live OpenAI-compatible server (by default it starts
the local llama.cpp server itself, with prompt logprobs enabled for the echo mode) and prints,
per mode: LLM calls, prompt and completion tokens, wall time, passes Algorithm 1 needed to
bring the 90% half-width below 5 (or that it hit the cap), and the mean score.

Every mode sees the same explanation and the same per-pass draws (same seed), so the rows
differ only in how predictions are read. Wall times are only comparable within one run.

    python bench/simulators.py                    # starts the local server
    python bench/simulators.py --base-url http://127.0.0.1:8765/v1 --modes one,list
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import replace

from vse import LLM, explain_neuron
from vse.core.stats import StopRule
from vse.data.loader import load_target
from vse.llm.client import ClientConfig, LLMClient
from vse.method.explain import ExplainConfig
from vse.method.fewshot import fewshot_neurons
from vse.method.prompts import EXPLANATION_PREFIX
from vse.method.score import ScoreConfig, score_target
from vse.method.simulators import MODES, SimulationError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", help="use this server instead of starting the local one")
    ap.add_argument("--port", type=int, default=0, help="port for the local server (0: any free port)")
    ap.add_argument(
        "--neuron", default="efficientnet_lite0/_conv_head/903", help="a dev neuron by default (never evaluated)"
    )
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--max-passes", type=int, default=10, help="Algorithm 1's cap for every mode")
    ap.add_argument(
        "--echo-max-passes", type=int, default=3, help="cap for echo (about 0.3 s per prompt token on 2 CPU cores)"
    )
    ap.add_argument("--explanation", help="explanation to score (default: generate one with seed 0)")
    args = ap.parse_args()

    target = load_target(args.neuron, "weight-label")
    fewshot = fewshot_neurons(args.neuron, "weight-label")
    base = ScoreConfig(n_fewshot_pairs=25)

    with contextlib.ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            from vse.llm.server import LocalServer, assemble_model

            base_url = stack.enter_context(LocalServer(assemble_model(), port=args.port)).base_url
        text = args.explanation
        if text is None:
            llm = LLM.from_client(LLMClient(ClientConfig(base_url=base_url)))
            text = explain_neuron(args.neuron, "weight-label", llm=llm, config=ExplainConfig())[0].explanation
        print(f"neuron {target.neuron}; explanation: {EXPLANATION_PREFIX} {text}", flush=True)
        print(
            f"pairs: {base.n_items} target items a pass, {base.n_fewshot_pairs} pairs for each of {len(fewshot)} "
            "few-shot neurons\n",
            flush=True,
        )
        rows = []
        for mode in args.modes.split(","):
            cap = args.echo_max_passes if mode == "echo" else args.max_passes
            # A cap below Algorithm 1's minimum of 3 lowers the minimum too (said in the row: it hits the cap).
            config = replace(base, mode=mode, stop=StopRule(min_runs=max(2, min(3, cap)), max_runs=cap))
            client = LLMClient(ClientConfig(base_url=base_url, timeout_s=1800))
            start = time.perf_counter()
            try:
                r = score_target(client, text, target, fewshot, config, seed=0)
                outcome = f"{r.passes}{' (hit cap)' if r.hit_cap else ''}"
                score = f"{r.mean:.1f} ± {r.half_width:.1f}"
                failed = r.failed_passes
            except SimulationError as err:
                outcome, score, failed = "failed", str(err)[:60], "all"
            wall = time.perf_counter() - start
            rows.append(
                (
                    mode,
                    client.calls,
                    client.usage.prompt_tokens,
                    client.usage.completion_tokens,
                    f"{wall:.0f}",
                    f"{wall / max(client.calls, 1):.2f}",
                    outcome,
                    score,
                    failed,
                )
            )
            print(f"done {mode}: {rows[-1]}", file=sys.stderr, flush=True)
    head = (
        "mode",
        "calls",
        "prompt tokens",
        "completion tokens",
        "wall s",
        "s/call",
        "passes to half-width<5",
        "score ± 90% CI",
        "failed passes",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
