"""Benchmark: the old local server against llama.cpp's llama-server, in one run.

- old: llama-cpp-python 0.3.36's server with vse's logprobs patch (`bench/fastlogprobs.py`), what
  `vse llm serve` ran before vse moved to llama-server; it runs under ``--old-python``, a Python that has
  ``llama-cpp-python[server]==0.3.36`` (`make bench-server` makes such a venv: about 5 minutes of
  compiling on 2 cores);
- new: llama.cpp's ``llama-server`` built from the same vendored source (vse's cached build, or
  ``$VSE_LLAMA_SERVER``), ``-np 4 -c 16384``.

Both serve the same GGUF with 2 threads at the same time. The requests are real: the one-item
prediction requests (``max_tokens`` 1 with ``logprobs``) recorded in a power-study cassette, read
out of the gzip JSON and sent byte for byte, in recorded order, and the cassette's first explanation
request. Interleaved: one at a time, each request goes to both servers in turn (alternating which
goes first); with N in flight, blocks of requests alternate between the servers. Reported per
server: median seconds per call, items per second at 1, 2 and 4 in flight, agreement with the
recorded reply (the same generated token; the expected value of the digits' distribution, as vse
reads it, against the recorded one) and the wall time of one explanation call (cold: the first
call of the run on that prompt; warm: the median of the repeats, prefix cached).
Prints a Markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from vse.llm.client import parse_logprobs
from vse.llm.server import LocalServer, assemble_model, free_port, stop_on_signals
from vse.method.simulators import SimulationError
from vse.method.simulators.numbers import expected_value, number_distribution

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASSETTE = ROOT / "cassettes" / "power-study" / "efficientnet_lite0___conv_head__100.json.gz"


@dataclass
class Recorded:
    body: bytes
    token: str
    ev: float | None


@dataclass
class Tally:
    """One server's measurements."""

    name: str
    one_at_a_time: list[float] = field(default_factory=list)  # seconds per call
    same_token: int = 0
    ev_diffs: list[float] = field(default_factory=list)
    compared: int = 0
    in_flight: dict[int, tuple[int, float]] = field(default_factory=dict)  # k -> (calls, seconds)
    explain: list[float] = field(default_factory=list)


def ev_of(top: dict[str, float]) -> float | None:
    try:
        return expected_value(number_distribution(top))
    except SimulationError:
        return None


def read_reply(data: dict) -> tuple[str, float | None]:
    tokens, _ = parse_logprobs(data["choices"][0].get("logprobs"))
    return tokens[0].token, ev_of(tokens[0].top)


def load_requests(cassette: Path, n: int) -> tuple[list[Recorded], bytes]:
    """The first ``n`` recorded one-item requests with their replies, and the first explanation request."""
    with gzip.open(cassette, "rt", encoding="utf-8") as f:
        interactions = json.load(f)["interactions"]
    items, explanation = [], None
    for it in interactions:
        req, resp = it["request"], it["response"]
        if req["method"] != "POST" or not req["uri"].endswith("/completions") or resp["status"]["code"] != 200:
            continue
        raw = req["body"].encode() if isinstance(req["body"], str) else req["body"]
        body = json.loads(raw)
        if body.get("max_tokens") == 1 and body.get("logprobs") and len(items) < n:
            token, ev = read_reply(json.loads(resp["body"]["string"]))
            items.append(Recorded(raw, token, ev))
        elif body.get("max_tokens", 0) > 1 and explanation is None:
            explanation = raw
    if explanation is None or not items:
        raise SystemExit(f"{cassette}: no one-item requests or no explanation request recorded")
    return items, explanation


def post(session: requests.Session, base_url: str, body: bytes) -> tuple[float, dict]:
    t = time.perf_counter()
    resp = session.post(base_url + "/completions", data=body, headers={"Content-Type": "application/json"}, timeout=300)
    resp.raise_for_status()
    return time.perf_counter() - t, resp.json()


@contextlib.contextmanager
def old_server(python: str, model: Path, port: int, log_path: Path):
    """llama-cpp-python's server with the logprobs patch, as `vse llm serve` started it before."""
    cmd = [
        python,
        str(ROOT / "bench" / "fastlogprobs.py"),
        "--model",
        str(model),
        "--model_alias",
        model.name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
        "--logits_all",
        "true",
    ]
    with log_path.open("wb") as logf:
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"old server exited ({proc.returncode}); log {log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() - t0 > 300:
                raise SystemExit(f"old server not up after 300 s; log {log_path}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_in_flight(base_url: str, bodies: list[bytes], k: int) -> float:
    """Seconds to answer ``bodies`` with ``k`` requests in flight (each thread its own session)."""
    sessions = [requests.Session() for _ in range(k)]

    def one(i: int) -> None:
        post(sessions[i % k], base_url, bodies[i])

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=k) as pool:
        list(pool.map(one, range(len(bodies))))
    return time.perf_counter() - t


def table(servers: list[tuple[Tally, str]], n_items: int, cassette: Path) -> str:
    ks = sorted({k for t, _ in servers for k in t.in_flight})
    lines = [
        f"Requests: the first {n_items} one-item requests recorded in `{cassette.relative_to(ROOT)}`, "
        f"and its first explanation request; both servers up at once, 2 threads each.\n"
    ]
    head = "| server | median s/call | items/s, 1 in flight | " + "".join(f"{k} in flight | " for k in ks)
    lines.append(
        head + "top token as recorded | EV diff vs recorded (median) | explanation call s (cold; warm median) |"
    )
    lines.append("|---" * (6 + len(ks)) + "|")
    for tally, _ in servers:
        per = statistics.median(tally.one_at_a_time)
        rate1 = len(tally.one_at_a_time) / sum(tally.one_at_a_time)
        rates = "".join(f"{c / s:.2f} | " for c, s in (tally.in_flight[k] for k in ks))
        ev = f"{statistics.median(tally.ev_diffs):.3f}" if tally.ev_diffs else "-"
        warm = statistics.median(tally.explain[1:]) if len(tally.explain) > 1 else float("nan")
        lines.append(
            f"| {tally.name} | {per:.3f} | {rate1:.2f} | {rates}{tally.same_token}/{tally.compared} | {ev} | "
            f"{tally.explain[0]:.2f}; {warm:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--old-python",
        default=None,
        help="a Python with llama-cpp-python[server]==0.3.36 (default: skip the old server)",
    )
    ap.add_argument("--cassette", type=Path, default=DEFAULT_CASSETTE)
    ap.add_argument("--n", type=int, default=120, help="one-item requests to send (the first N recorded)")
    ap.add_argument("--in-flight", default="2,4", help="concurrency levels besides 1")
    ap.add_argument("--block", type=int, default=20, help="requests per block when interleaving the in-flight runs")
    ap.add_argument("--explain-repeats", type=int, default=3)
    ap.add_argument("--new-threads", type=int, default=2, help="llama-server's -t (the old server keeps 2)")
    ap.add_argument("--new-slots", type=int, default=4, help="llama-server's -np")
    ap.add_argument("--new-args", default="", help="extra llama-server arguments, space-separated (e.g. '--poll 0')")
    args = ap.parse_args()

    items, explanation = load_requests(args.cassette, args.n)
    model = assemble_model()
    logs = Path(model).parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        servers: list[tuple[Tally, str]] = []
        t0 = time.monotonic()
        new = stack.enter_context(
            LocalServer(
                model,
                port=free_port(),
                n_threads=args.new_threads,
                slots=args.new_slots,
                extra_args=args.new_args.split(),
                log_path=logs / "bench-llama-server.log",
            )
        )
        servers.append(
            (
                Tally(
                    f"llama-server {new.binary.commit} "
                    + f"(-np {new.slots} -c {new.n_ctx} -t {args.new_threads} {args.new_args}".rstrip()
                    + ")"
                ),
                new.base_url,
            )
        )
        print(f"llama-server up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        if args.old_python:
            t0 = time.monotonic()
            url = stack.enter_context(old_server(args.old_python, model, free_port(), logs / "bench-old-server.log"))
            servers.insert(0, (Tally("llama-cpp-python 0.3.36 server + vse logprobs patch"), url))
            print(f"old server up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        session = requests.Session()

        # Explanation call: the first is cold (nothing of this prompt cached), then warm repeats.
        for rep in range(1 + args.explain_repeats):
            for tally, url in servers if rep % 2 == 0 else servers[::-1]:
                tally.explain.append(post(session, url, explanation)[0])

        # One at a time, interleaved per request; agreement with the recorded replies.
        for i, rec in enumerate(items):
            for tally, url in servers if i % 2 == 0 else servers[::-1]:
                dt, data = post(session, url, rec.body)
                tally.one_at_a_time.append(dt)
                token, ev = read_reply(data)
                tally.compared += 1
                tally.same_token += token == rec.token
                if ev is not None and rec.ev is not None:
                    tally.ev_diffs.append(abs(ev - rec.ev))
            if (i + 1) % 20 == 0:
                print(f"one at a time: {i + 1}/{len(items)}", file=sys.stderr)

        # Printed now too, so a run cut off during the in-flight part still leaves numbers.
        print(table(servers, len(items), args.cassette), file=sys.stderr, flush=True)
        bodies = [r.body for r in items]
        for k in [int(x) for x in args.in_flight.split(",") if x]:
            # Untimed warm-up: each of the k slots first evaluates the shared prompt prefix once
            # (about 1,000 tokens, 10-15 s a slot here); a study pays that once per slot, then sends
            # thousands of predictions, so the timed blocks measure the steady state.
            for _tally, url in servers:
                run_in_flight(url, bodies[: 2 * k], k)
            for b, start in enumerate(range(0, len(bodies), args.block)):
                block = bodies[start : start + args.block]
                for tally, url in servers if b % 2 == 0 else servers[::-1]:
                    calls, secs = tally.in_flight.get(k, (0, 0.0))
                    tally.in_flight[k] = (calls + len(block), secs + run_in_flight(url, block, k))
            print(f"{k} in flight: done", file=sys.stderr)

    print(table(servers, len(items), args.cassette))


if __name__ == "__main__":
    with stop_on_signals():  # a SIGTERM (e.g. `timeout`) still stops both servers
        main()
