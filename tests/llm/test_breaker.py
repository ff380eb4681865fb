"""The retry policy's circuit breaker and its one-line retry messages.

Closed ports are real (a socket bound, then closed), so the connection errors are the ones urllib3
really raises; the breaker's clock is injected where a cool-down is tested.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from vse.llm.client import CircuitBreaker, ClientConfig, LLMClient, breaker_for, describe_failure
from vse.llm.errors import LLMEndpointDown, LLMRetriesExhausted

from .fakes import FakeSession, Sleeps, make_response

REPO = Path(__file__).resolve().parents[2]
OK = {
    "choices": [{"text": "ok", "finish_reason": "stop", "index": 0}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused() -> requests.ConnectionError:
    """The exception requests raises for a closed port, made for real."""
    try:
        requests.post(f"http://127.0.0.1:{closed_port()}/v1/completions", data=b"{}", timeout=2)
    except requests.ConnectionError as exc:
        return exc
    raise AssertionError("a closed port answered")


pytestmark = pytest.mark.enable_socket


def test_a_retry_is_one_short_line(caplog):
    port = closed_port()
    cfg = ClientConfig(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, breaker_failures=0)
    c = LLMClient(cfg, sleep=Sleeps(), rng=random.Random(0))
    with caplog.at_level(logging.WARNING, logger="vse.llm.client"), pytest.raises(LLMRetriesExhausted) as info:
        c.complete("Hi")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    for k, line in enumerate(lines, start=1):
        assert line.startswith(f"vse: 127.0.0.1:{port} refused the connection; retry {k}/2 in "), line
        assert line.endswith(" s") and len(line) < 80
    assert "HTTPConnectionPool" not in str(info.value) and "NewConnectionError" not in str(info.value)
    assert str(info.value).endswith("last error: refused the connection")


def test_an_http_retry_line_names_the_status():
    c = LLMClient(
        ClientConfig(base_url="http://h:1/v1"),
        session=FakeSession(make_response(503, {"error": {"message": "busy"}}), make_response(200, OK)),
        sleep=Sleeps(),
        rng=random.Random(0),
    )
    with pytest.MonkeyPatch.context() as mp:
        seen = []
        mp.setattr(logging.getLogger("vse.llm.client"), "warning", lambda fmt, *a: seen.append(fmt % a))
        assert c.complete("Hi").text == "ok"
    assert seen and seen[0].startswith("vse: h:1 answered HTTP 503 (busy); retry 1/5 in ")


def test_failures_are_described_in_words():
    assert describe_failure(refused()) == "refused the connection"
    assert (
        describe_failure(requests.ConnectionError(socket.gaierror(-2, "Name or service not known")))
        == "is an unknown host name"
    )
    assert (
        describe_failure(requests.ReadTimeout("Read timed out. (read timeout=120)"), 120)
        == "did not reply within 120 s"
    )
    assert (
        describe_failure(requests.ConnectTimeout("Connection to h timed out. (connect timeout=10)"))
        == "did not accept the connection in time"
    )
    assert (
        describe_failure(requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer")))
        == "closed the connection mid-request"
    )


def test_the_breaker_opens_after_failures_in_a_row_and_fails_every_caller_at_once():
    cfg = ClientConfig(base_url="http://gone:1/v1", breaker_failures=3)
    first = LLMClient(
        cfg,
        session=FakeSession(*[requests.ConnectionError("Connection refused")] * 3),
        sleep=Sleeps(),
        rng=random.Random(0),
    )
    with pytest.raises(LLMEndpointDown) as info:
        first.complete("Hi")
    assert "http://gone:1/v1 is down: 3 connection attempts in a row failed (refused the connection)" in str(info.value)
    # Another client (another worker thread) on the same endpoint: no request, no wait.
    other_session, other_sleeps = FakeSession(), Sleeps()
    other = LLMClient(cfg, session=other_session, sleep=other_sleeps)
    with pytest.raises(LLMEndpointDown):
        other.complete("Hi")
    assert other_session.requests == [] and other_sleeps == []
    # A different endpoint is not affected.
    assert not breaker_for(ClientConfig(base_url="http://gone:2/v1")).is_open


def test_an_http_answer_resets_the_count_and_a_read_timeout_does_not_count():
    script = (
        [requests.ConnectionError("Connection refused")] * 2
        + [make_response(503, {})]
        + [requests.ConnectionError("Connection refused")] * 2
        + [requests.ReadTimeout("slow")] * 3
        + [make_response(200, OK)]
    )
    c = LLMClient(
        ClientConfig(base_url="http://flaky:1/v1", breaker_failures=3, max_retries=10),
        session=FakeSession(*script),
        sleep=Sleeps(),
        rng=random.Random(0),
    )
    assert c.complete("Hi").text == "ok"
    assert not c.breaker.is_open and c.breaker.failures == 0


def test_after_the_cooldown_one_try_goes_through_and_a_success_closes_it():
    now = [0.0]
    breaker = CircuitBreaker("http://h:1", threshold=2, cooldown_s=30.0, clock=lambda: now[0])
    assert not breaker.failure("refused") and breaker.failure("refused")
    with pytest.raises(LLMEndpointDown):
        breaker.check()
    now[0] = 31.0
    breaker.check()  # half-open: let through
    assert breaker.failure("refused")  # one more failure reopens at once
    with pytest.raises(LLMEndpointDown):
        breaker.check()
    now[0] = 62.0
    breaker.check()
    breaker.reachable()
    assert not breaker.is_open and breaker.failures == 0


def test_a_sleeper_wakes_when_the_breaker_opens():
    breaker = CircuitBreaker("http://h:1", threshold=1)
    woke = []
    t = threading.Thread(target=lambda: (breaker.pause(30), woke.append(time.monotonic())))
    t0 = time.monotonic()
    t.start()
    time.sleep(0.1)
    breaker.failure("refused")
    t.join(5)
    assert woke and woke[0] - t0 < 2


def test_many_threads_against_a_closed_port_all_stop_within_seconds():
    """Real sockets, real waits (the default backoff), 8 threads with their own clients."""
    cfg = ClientConfig(base_url=f"http://127.0.0.1:{closed_port()}/v1")
    errors: list[BaseException] = []
    ends: list[float] = []

    def worker():
        client = LLMClient(cfg)
        for _ in range(5):  # five units each: after the breaker opens, each fails at once
            try:
                client.complete("Hi")
            except (LLMEndpointDown, LLMRetriesExhausted) as exc:
                errors.append(exc)
        ends.append(time.monotonic())

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ends) == 8 and max(ends) - t0 < 15, max(ends) - t0  # about 1 s on an idle machine
    assert len(errors) == 40 and all(isinstance(e, LLMEndpointDown) for e in errors)


def start_stub(port: int = 0) -> tuple[subprocess.Popen, str]:
    """bench.stub_server in its own process (so a kill -9 closes every connection, as a crash does)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.stub_server", "--delay", "0.01", "--port", str(port), "--lifetime", "60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def test_a_server_killed_mid_run_stops_the_callers():
    stub, url = start_stub()
    try:
        c = LLMClient(ClientConfig(base_url=url))
        assert c.complete("Hi").text
        stub.send_signal(signal.SIGKILL)
        stub.wait(5)
        t0 = time.monotonic()
        with pytest.raises(LLMEndpointDown, match="refused the connection|closed the connection"):
            c.complete("Hi")
        assert time.monotonic() - t0 < 15
    finally:
        stub.kill()
        stub.wait()


def test_a_host_that_drops_packets_opens_the_breaker_after_the_window_not_five_timeouts():
    """Each connect timeout costs connect_timeout_s; the breaker opens once failures span breaker_window_s."""
    now = [0.0]
    breaker = CircuitBreaker("http://blackhole:1", threshold=5, window_s=10.0, clock=lambda: now[0])

    class Slow(FakeSession):
        def post(self, url, **kw):
            now[0] += 5.0  # the connect timeout passing
            return super().post(url, **kw)

    session = Slow(*[requests.ConnectTimeout("Connection to blackhole timed out. (connect timeout=5)")] * 5)
    c = LLMClient(
        ClientConfig(base_url="http://blackhole:1/v1"),
        session=session,
        sleep=Sleeps(),
        rng=random.Random(0),
        breaker=breaker,
    )
    with pytest.raises(LLMEndpointDown, match="did not accept the connection in time"):
        c.complete("Hi")
    assert len(session.requests) == 3 and now[0] == 15.0  # failed at 5, 10, 15 s: open at 15 s (10 s after the first)
