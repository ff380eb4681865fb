"""What a user waits for: one LLM-scored explanation end to end, on a freshly started local server and on a warm one.

Runs `vse score` as a user does (a subprocess, its own cassette in a scratch folder, so nothing replays)
against vse's llama-server, and times it. For each protocol and predictions-in-flight level it starts a
fresh server (cold), scores, then scores again on the same server (warm: its slots already hold the
few-shot prefix), once with the slot warm-up (`vse.llm.slots`) and once without it (VSE_WARM_SLOTS=0, the
baseline), in the same run. Retry lines on stderr (the client's "retry i/n" warnings) are counted.

    python bench/cold_start.py                       # the issue's command: recall-free, the default in flight
    python bench/cold_start.py --protocol uniform --in-flight 1 2 4 8
    python bench/cold_start.py --protocol --commands validate label     # vse validate on 4 units, vse label on 8
    python bench/cold_start.py --in-flight 8 --warm-up on --server-args="--cache-ram 8192"   # before issue 34
    python bench/cold_start.py --warm-up on --server-args "" --server-args=-kvu   # no, shared KV cache: in turn

``--in-flight default`` passes no ``--in-flight`` (what a user runs: two a slot on vse's server);
``--server-args`` are appended to every llama-server command line (a later flag wins over vse's own; write
``--server-args=-x`` for one that starts with a dash).

Prints a Markdown table; measured rows only. Keep the machine quiet while it runs (2 cores).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vse.llm.model_files import assemble_model
from vse.llm.server import DEFAULT_SLOTS, LocalServer

NEURON = "efficientnet_lite0/_conv_head/555"
EXPLANATION = "dogs, especially terriers and hounds"
RETRY = re.compile(r"retry \d+/\d+")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def score_once(base_url: str, protocol: str, in_flight: str, warm_slots: bool, scratch: Path) -> tuple[float, int, str]:
    """Wall seconds, retry lines, and the score line of one `vse score` run (in_flight "default": no flag);
    the client's CPU seconds are read by the caller (`resource.getrusage` of the children)."""
    cassette = scratch / f"c{time.monotonic_ns()}.json.gz"
    cmd = [
        sys.executable, "-c", "from vse.cli.main import main; main()", "score", NEURON,
        "--target", "weight-label", "--explanation", EXPLANATION, "--mode", "one", "--protocol", protocol,
        "--base-url", base_url, *([] if in_flight == "default" else ["--in-flight", in_flight]),
        "--cassette", str(cassette), "--out", str(scratch / f"o{time.monotonic_ns()}.jsonl"),
    ]  # fmt: skip
    env = {**os.environ, "VSE_WARM_SLOTS": "1" if warm_slots else "0"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"vse score failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    line = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    return wall, len(RETRY.findall(proc.stderr)), line


#: The other commands a user runs, as run here: the recommended path of each (embedding simulator,
#: recall-free), with explanations from the server.
COMMANDS = {
    "validate": lambda url, tmp: [
        "validate", "efficientnet_lite0/_conv_head", "--units", "1,2,3,4", "--methods", "weight-label",
        "--targets", "weight-label", "--cassettes", str(tmp / f"v{time.monotonic_ns()}"), "--base-url", url,
    ],
    "label": lambda url, tmp: [
        "label", "efficientnet_lite0/_conv_head", "--method", "weight-label", "--units", "0:8", "--score",
        "--base-url", url, "--out", str(tmp / f"l{time.monotonic_ns()}.jsonl"), "--no-progress",
    ],
}  # fmt: skip


def command_once(name: str, base_url: str, scratch: Path) -> tuple[float, int, str]:
    """Wall seconds, retry lines and the last line printed, of one run of `vse <name>`."""
    cmd = [sys.executable, "-c", "from vse.cli.main import main; main()", *COMMANDS[name](base_url, scratch)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"vse {name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return wall, len(RETRY.findall(proc.stderr)), lines[-1][:90] if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", nargs="*", default=["recall-free"])
    ap.add_argument("--in-flight", nargs="+", default=["default"], help="numbers, or 'default' (no flag)")
    ap.add_argument(
        "--server-args",
        action="append",
        help="appended to every llama-server command line; repeated: one server setting each, in turn",
    )
    ap.add_argument("--slots", nargs="+", type=int, default=[DEFAULT_SLOTS], help="llama-server slots (-np), in turn")
    ap.add_argument("--warm-up", nargs="+", choices=["on", "off"], default=["on", "off"])
    ap.add_argument("--commands", nargs="+", choices=sorted(COMMANDS), default=[])
    args = ap.parse_args()
    args.server_args = args.server_args or [""]
    bad = [n for n in args.in_flight if n != "default" and not n.isdigit()]
    if bad:
        ap.error(f"--in-flight takes numbers or 'default', not {bad}")
    model = assemble_model()
    if args.commands:
        print("| command | server | wall s | retry lines | last line |")
        print("|---|---|---|---|---|")
        with tempfile.TemporaryDirectory(prefix="vse-bench-") as tmp:
            for name in args.commands:
                with LocalServer(model, port=0, extra_args=tuple(args.server_args[0].split())) as server:
                    for state in ("cold", "warm"):
                        wall, retries, line = command_once(name, server.base_url, Path(tmp))
                        print(f"| {name} | {state} | {wall:.0f} | {retries} | {line} |")
                        sys.stdout.flush()
    if not args.protocol:
        return
    print(
        "| protocol | slots | server args | in flight | slot warm-up | server | wall s | client CPU s "
        "| server CPU s | retry lines | score |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    settings = [
        (protocol, slots, extra, in_flight, warm)
        for protocol in args.protocol
        for slots in args.slots
        for extra in args.server_args
        for in_flight in args.in_flight
        for warm in args.warm_up
    ]
    with tempfile.TemporaryDirectory(prefix="vse-bench-") as tmp:
        for protocol, slots, extra, in_flight, warm in settings:
            with LocalServer(model, port=0, slots=slots, extra_args=tuple(extra.split())) as server:
                for state in ("cold", "warm"):
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    server_before = _cpu_seconds(server.proc.pid)
                    wall, retries, line = score_once(server.base_url, protocol, in_flight, warm == "on", Path(tmp))
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    client = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                    server_cpu = _cpu_seconds(server.proc.pid) - server_before
                    score = line.split("  ")[0]
                    print(
                        f"| {protocol} | {slots} | {extra or '-'} | {in_flight} | {warm} | {state} | {wall:.0f} "
                        f"| {client:.1f} | {server_cpu:.0f} | {retries} | {score} |"
                    )
                    sys.stdout.flush()


if __name__ == "__main__":
    main()
