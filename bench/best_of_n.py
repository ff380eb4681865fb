"""What best of N costs a user: `vse explain --n N` (candidates chosen by the default scorer) on the local server,
the candidates sent together (the server's slots, the shared prompt warmed once) against one at a time (the
baseline, ``--in-flight 1``), in the same run.

    python bench/best_of_n.py                        # N = 1, 2, 4, 8 on 3 units, both ways
    python bench/best_of_n.py --base-url http://127.0.0.1:8765/v1 --n 1 4

Runs the command as a user does (a subprocess, its own cassette in a scratch folder, so nothing replays) and
prints a Markdown table of measured rows: wall seconds per unit, calls and tokens per unit (from the
cassette's recorded usage). Units: `_conv_head` 0..7 minus the defaults study's (never evaluated). Keep the
machine quiet while it runs (2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vse.llm.model_files import assemble_model
from vse.llm.server import LocalServer

UNITS = (1, 2, 3)


def usage_of(cassette: Path) -> tuple[int, int, int]:
    """(calls, prompt tokens, completion tokens) of the recorded explanation replies in a cassette."""
    data = json.loads(gzip.decompress(cassette.read_bytes()))
    calls = prompt = completion = 0
    for item in data.get("interactions", []):
        body = item["response"]["body"]["string"]
        reply = json.loads(body) if body else {}
        if "usage" in reply:
            calls += 1
            prompt += reply["usage"].get("prompt_tokens", 0)
            completion += reply["usage"].get("completion_tokens", 0)
    return calls, prompt, completion


def explain_once(base_url: str, unit: int, n: int, in_flight: int | None, scratch: Path) -> tuple[float, Path]:
    cassette = scratch / f"c{time.monotonic_ns()}.json.gz"
    cmd = [
        sys.executable, "-c", "from vse.cli.main import main; main()", "explain",
        f"efficientnet_lite0/_conv_head/{unit}", "--method", "weight-label", "--n", str(n),
        "--base-url", base_url, "--cassette", str(cassette),
    ]  # fmt: skip
    if in_flight is not None:
        cmd += ["--in-flight", str(in_flight)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"vse explain failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, cassette


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default=None, help="a running server (default: start vse's llama-server)")
    ap.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--units", type=int, nargs="+", default=list(UNITS))
    args = ap.parse_args()
    rows = []
    with contextlib.ExitStack() as stack:
        url = args.base_url
        if url is None:
            server = stack.enter_context(LocalServer(assemble_model()))
            url = server.base_url
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vse-bench-")))
        for n in args.n:
            for label, in_flight in (("one at a time", 1), ("together", None)):
                if n == 1 and in_flight is None:
                    continue  # one candidate: nothing to send together
                walls, totals = [], [0, 0, 0]
                for unit in args.units:
                    wall, cassette = explain_once(url, unit, n, in_flight, scratch)
                    walls.append(wall)
                    totals = [a + b for a, b in zip(totals, usage_of(cassette), strict=True)]
                k = len(args.units)
                rows.append((n, label, sum(walls) / k, totals[0] / k, totals[1] / k, totals[2] / k))
                print(f"n={n} {label}: {sum(walls) / k:.1f} s per unit", file=sys.stderr, flush=True)
    print(f"`vse explain --n N` on {len(args.units)} `_conv_head` units, wall seconds per unit (choice included)\n")
    print("| N | candidates sent | s per unit | calls per unit | prompt tokens | completion tokens |")
    print("|---|---|---|---|---|---|")
    for n, label, wall, calls, prompt, completion in rows:
        print(f"| {n} | {label} | {wall:.1f} | {calls:.0f} | {prompt:.0f} | {completion:.0f} |")


if __name__ == "__main__":
    main()
