"""`vse llm serve`'s shutdown: SIGINT and SIGTERM stop both vse and the server it started (which
runs in its own session), also when SIGINT was inherited as ignored (a background job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The shape of `vse llm serve`: a child in its own session, waited on, stopped in `finally`.
SCRIPT = """
import subprocess, sys
from vse.llm.server import stop_on_signals
child = subprocess.Popen(["sleep", "60"], start_new_session=True, stdout=subprocess.DEVNULL)
with stop_on_signals():
    try:
        print(child.pid, flush=True)  # the handlers are in place, and the finally will run
        child.wait()
    except KeyboardInterrupt:
        pass
    finally:
        child.terminate()
        child.wait()
print("stopped", flush=True)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_vse_and_the_server(signum):
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `make llm-server &` starts it
    )
    try:
        child = int(proc.stdout.readline())
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=20)
        assert "stopped" in out
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), "the server outlived vse"
    finally:
        if proc.poll() is None:
            proc.kill()
