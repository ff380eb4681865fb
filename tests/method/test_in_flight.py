"""Predictions in flight: one-item predictions sent concurrently give what one after the other gives.

A real HTTP server on loopback (threaded, like llama-server's slots) answers each one-item request
after a short delay with logprobs that depend on the request's bytes, and counts how many requests
it holds at once. Recording with 4 in flight must overlap requests, and the cassette must then
replay the same values with 1 and with 4 in flight (a replay matches each request by its bytes,
not by its position). pytest-socket blocks sockets for the suite; `enable_socket` lifts that here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vse.llm.cassettes import use_cassette
from vse.llm.client import ClientConfig, Completion, LLMClient, TokenLogprob, Usage
from vse.method.prediction_store import PredictionStore
from vse.method.prompts import Example, Pair
from vse.method.score import ScoreConfig, predict_items
from vse.method.simulators import SimulationError

from ..llm.fakes import ScriptedClient, last_line

EXAMPLES = (Example("unit 7", (Pair("a dog", 8), Pair("a cat", 1)), "dogs"),)
TEXTS = [f"item {i}" for i in range(16)] + ["item 3", "item 0"]  # two repeats: predicted once each
DELAY_S = 0.05


def top_for(prompt: str) -> dict[str, float]:
    """Logprobs that depend on the prompt's bytes: each item gets its own expected value."""
    h = hashlib.sha256(prompt.encode("utf-8")).digest()
    a, b = h[0] % 11, h[1] % 10
    return {str(a): -0.2, str(b): -1.9 if b != a else -0.2, " the": -3.0}


class Slots(BaseHTTPRequestHandler):
    """POST /v1/completions with a legacy logprobs reply; counts concurrent requests."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    active = 0
    max_active = 0
    posts = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.active += 1
            cls.posts += 1
            cls.max_active = max(cls.max_active, cls.active)
        try:
            time.sleep(DELAY_S)
            top = top_for(req["prompt"])
            token = max(top, key=top.get)
            body = {
                "object": "text_completion",
                "choices": [
                    {
                        "index": 0,
                        "text": token,
                        "finish_reason": "length",
                        "logprobs": {
                            "tokens": [token],
                            "token_logprobs": [top[token]],
                            "top_logprobs": [top],
                            "text_offset": [0],
                        },
                    }
                ],
                "usage": {"prompt_tokens": len(req["prompt"]) // 4, "completion_tokens": 1},
            }
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            with cls.lock:
                cls.active -= 1

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    Slots.active = Slots.max_active = Slots.posts = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Slots)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def predict(client, in_flight, store=None, explanation="dogs"):
    return predict_items(
        client, explanation, TEXTS, kind="weight-label", examples=EXAMPLES, store=store, in_flight=in_flight
    )


@pytest.mark.enable_socket
def test_in_flight_overlaps_requests_and_gives_the_sequential_values(server):
    one = LLMClient(ClientConfig(base_url=server, max_retries=0))
    sequential = predict(one, 1, PredictionStore())
    assert Slots.max_active == 1  # one at a time by default
    assert Slots.posts == 16 == sequential.calls  # each distinct text once

    Slots.max_active = Slots.posts = 0
    four = LLMClient(ClientConfig(base_url=server, max_retries=0))
    store = PredictionStore()
    concurrent = predict(four, 4, store)
    assert Slots.max_active == 4  # really 4 at once (16 requests of 50 ms each)
    assert Slots.posts == 16
    assert concurrent.values == sequential.values
    assert (concurrent.calls, concurrent.usage, concurrent.unresolved) == (
        sequential.calls,
        sequential.usage,
        sequential.unresolved,
    )
    assert (four.calls, four.usage) == (one.calls, one.usage)  # the client's totals, summed from 4 threads
    assert concurrent.values[16] == concurrent.values[3] and concurrent.values[17] == concurrent.values[0]
    assert len(set(concurrent.values)) > 5  # the items really differ
    assert (store.misses, store.hits, len(store)) == (16, 2, 16)  # as one after the other: repeats read the store


@pytest.mark.enable_socket
def test_recorded_in_flight_replays_the_same_values_with_any_in_flight(server, tmp_path):
    cassette = tmp_path / "inflight.json.gz"
    with use_cassette(cassette, record=True):
        live = predict(LLMClient(ClientConfig(base_url=server, max_retries=0)), 4, PredictionStore())
        neutral = predict(
            LLMClient(ClientConfig(base_url=server, max_retries=0)), 4, PredictionStore(), "nothing in particular"
        )
    assert Slots.max_active > 1
    stored = json.loads(gzip.decompress(cassette.read_bytes()))["interactions"]
    assert len(stored) == 32  # every reply recorded once, none lost by concurrent appends

    for in_flight in (1, 4, 8):
        with use_cassette(cassette) as c:  # replay only: no server is reached
            client = LLMClient(ClientConfig(base_url="http://127.0.0.1:1/v1", max_retries=0))
            replay = predict(client, in_flight, PredictionStore())
            replay_neutral = predict(client, in_flight, PredictionStore(), "nothing in particular")
            assert c.all_played
        assert replay.values == live.values and replay_neutral.values == neutral.values
        assert (replay.calls, replay.usage) == (live.calls, live.usage)


def _no_number_for_bad(prompt, kw):
    time.sleep(0.01)
    top = {" the": -0.1} if last_line(prompt).startswith("bad") else {"4": -0.1}
    return Completion("4", [TokenLogprob("4", -0.1, top)], Usage(10, 1), "length")


def failing():
    """A client whose replies carry no number for items named "bad ..."."""
    return ScriptedClient(_no_number_for_bad)


@pytest.mark.parametrize("in_flight", [1, 4])
def test_the_first_unreadable_item_in_order_is_the_error_and_only_earlier_items_are_stored(in_flight):
    texts = ["ok 0", "ok 1", "bad 2", "ok 3", "bad 4"] + [f"ok {i}" for i in range(5, 30)]
    store = PredictionStore()
    with pytest.raises(SimulationError, match="item 'bad 2'"):
        predict_items(
            failing(), "dogs", texts, kind="weight-label", examples=EXAMPLES, store=store, in_flight=in_flight
        )
    assert len(store) == 2  # "ok 0" and "ok 1", as one after the other


def test_in_flight_must_be_positive():
    with pytest.raises(ValueError, match="in_flight must be at least 1"):
        predict_items(failing(), "dogs", ["a"], kind="weight-label", examples=EXAMPLES, in_flight=0)


def test_list_mode_takes_in_flight_and_ignores_it():
    lister = ScriptedClient(lambda prompt, kw: Completion("a\t3\nb\t7\n<end>", [], Usage(5, 5), "stop"))
    sim = predict_items(
        lister,
        "dogs",
        ["a", "b"],
        kind="weight-label",
        examples=EXAMPLES,
        config=ScoreConfig(mode="list"),
        in_flight=4,
    )
    assert sim.values == [3.0, 7.0]


@pytest.mark.enable_socket
def test_vse_score_records_in_flight_and_replays_the_same_line_with_any_in_flight(server, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from vse.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VSE_BASE_URL", raising=False)
    cassette = str(tmp_path / "score.json.gz")
    args = [
        "score",
        "efficientnet_lite0/_conv_head/5",
        "--target",
        "weight-label",
        "--explanation",
        "dogs",
        "--mode",
        "one",
        "--protocol",
        "uniform",
        "--max-passes",
        "3",
        "--cassette",
        cassette,
    ]
    live = CliRunner().invoke(main, [*args, "--base-url", server, "--in-flight", "4"])
    assert live.exit_code == 0, live.output
    assert Slots.max_active == 4 and Slots.posts > 50
    line = [x for x in live.output.splitlines() if "[user] dogs" in x]
    assert len(line) == 1
    for n in ("1", "4"):
        replay = CliRunner().invoke(main, [*args, "--replay", "--in-flight", n])
        assert replay.exit_code == 0, replay.output
        assert [x for x in replay.output.splitlines() if "[user] dogs" in x] == line


def test_in_flight_zero_is_refused_by_the_commands():
    from click.testing import CliRunner

    from vse.cli.main import main

    for args in (
        ["score", "efficientnet_lite0/_conv_head/5", "--target", "weight-label", "--explanation", "x"],
        ["validate", "efficientnet_lite0/_conv_head", "--units", "1,2,3"],
        ["label", "efficientnet_lite0/_conv_head", "--method", "weight-label"],
    ):
        result = CliRunner().invoke(main, [*args, "--in-flight", "0"])
        assert result.exit_code == 2 and "--in-flight" in result.output, result.output
