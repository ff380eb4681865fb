"""Benchmark: units labelled per second with 1, 4 and 16 workers against a fixed-delay stub server.

Each unit's work is ``--calls`` real `LLMClient.complete` calls (vse's client, one client per
worker thread) to `bench.stub_server`, which answers each after ``--delay`` seconds; records go
through `vse.studies.layer_labelling.label_units` (O_APPEND + fsync per unit), so the figure includes all of vse's
own overhead. Ideal = workers / (calls x delay); target: 16 workers within 10 % of it.

    python -m bench.throughput [--delay 0.1] [--calls 3] [--workers 1 4 16] [--units-per-worker 20]

``python -m bench.throughput label --base-url URL --units N --workers W --out FILE`` runs one
labelling only (used by the kill-and-resume test).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from vse.llm.client import ClientConfig, LLMClient
from vse.method.label_record import LabelRecord, UnitUsage
from vse.studies.layer_labelling import label_units, per_thread


def make_work(calls: int, timeout_s: float = 30.0):
    """The per-unit work: ``calls`` completions through vse's client, summed usage in the record."""
    client_for = per_thread(lambda url: LLMClient(ClientConfig(base_url=url, timeout_s=timeout_s, max_retries=2)))

    def work(unit: int, base_url: str) -> LabelRecord:
        client = client_for(base_url)
        prompt, completion = 0, 0
        for k in range(calls):
            c = client.complete(f"Unit {unit}, call {k}: what does this neuron look for?", max_tokens=16, seed=k)
            prompt += c.usage.prompt_tokens
            completion += c.usage.completion_tokens
        return LabelRecord(unit, usage=UnitUsage(prompt, completion, calls))

    return work


def start_stub(delay: float, max_requests: int, lifetime: float) -> tuple[subprocess.Popen, str]:
    """The stub in its own process, so its threads do not compete with the labeller's for the GIL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.stub_server",
            "--delay",
            str(delay),
            "--max-requests",
            str(max_requests),
            "--lifetime",
            str(lifetime),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"stub server did not start (got {url!r})")
    return proc, url


def bench(args) -> int:
    total_units = sum(w * args.units_per_worker for w in args.workers)
    proc, url = start_stub(args.delay, max_requests=total_units * args.calls + 100, lifetime=args.lifetime)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for w in args.workers:
                n = w * args.units_per_worker
                s = label_units(
                    range(n),
                    make_work(args.calls),
                    out=Path(tmp) / f"w{w}.jsonl",
                    workers=w,
                    base_urls=[url],
                    progress=False,
                )
                if s.done != n or s.failed:
                    raise RuntimeError(f"{w} workers: {s}")
                rate = s.done / s.wall_s
                ideal = w / (args.calls * args.delay)
                rows.append((w, n, s.wall_s, rate, ideal, rate / ideal))
    finally:
        proc.kill()
        proc.wait()
    lines = [
        f"units/s vs ideal, stub delay {args.delay} s, {args.calls} calls/unit, "
        f"{platform.machine()} {platform.system()}, Python {platform.python_version()}, {date.today()}",
        "",
        "| workers | units | wall s | units/s | ideal units/s | of ideal |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {w} | {n} | {t:.2f} | {r:.2f} | {i:.2f} | {f:.1%} |" for w, n, t, r, i, f in rows]
    print("\n".join(lines))
    worst16 = [f for w, *_, f in rows if w == 16]
    if worst16 and worst16[0] < 0.9:
        print(f"16 workers at {worst16[0]:.1%} of ideal: below the 90% target", file=sys.stderr)
        return 1
    return 0


def label_only(args) -> int:
    s = label_units(
        range(args.units),
        make_work(args.calls),
        out=Path(args.out),
        workers=args.workers,
        base_urls=args.base_url,
        progress=False,
    )
    print(json.dumps(s.to_json()))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    one = sub.add_parser("label", help="label units 0..N-1 once against running servers")
    one.add_argument("--base-url", action="append", required=True)
    one.add_argument("--units", type=int, required=True)
    one.add_argument("--workers", type=int, default=4)
    one.add_argument("--calls", type=int, default=3)
    one.add_argument("--out", required=True)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--units-per-worker", type=int, default=20)
    ap.add_argument("--lifetime", type=float, default=300.0)
    args = ap.parse_args(argv)
    return label_only(args) if args.cmd == "label" else bench(args)


if __name__ == "__main__":
    sys.exit(main())
