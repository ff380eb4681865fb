"""Recording through a real HTTP server on loopback (marked live: needs sockets; `make smoke`).

The non-live tests in test_cassettes.py run the same scrubbing hooks in-process.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vse.llm.cassettes import use_cassette
from vse.llm.client import ClientConfig, LLMClient

KEY = "sk-live-SECRET-abcdef"


class FakeOpenAI(BaseHTTPRequestHandler):
    seen_auth: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.seen_auth.append(self.headers.get("Authorization"))
        reply = json.dumps(
            {
                "choices": [{"text": body["prompt"][::-1], "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "__cf_bm=SECRET-COOKIE; path=/")
        self.send_header("OpenAI-Organization", "org-SECRET")
        self.send_header("X-Request-Id", "req_SECRET")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.live
def test_recording_over_loopback_keeps_no_secrets_and_replays_without_the_server(tmp_path):
    cassette = tmp_path / "live.json.gz"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        client = LLMClient(ClientConfig(base_url=base, api_key=KEY))
        with use_cassette(cassette, record=True):
            assert client.complete("abc", max_tokens=1).text == "cba"
            assert client.complete("xyz", max_tokens=1).text == "zyx"
        # The same client (and its pooled connections) records the next cassette into that one.
        first = cassette.read_bytes()
        with use_cassette(tmp_path / "next.json.gz", record=True):
            assert client.complete("next", max_tokens=1).text == "txen"
        assert cassette.read_bytes() == first
        assert len(json.loads(gzip.decompress((tmp_path / "next.json.gz").read_bytes()))["interactions"]) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert FakeOpenAI.seen_auth[-2:] == [f"Bearer {KEY}"] * 2  # the key did reach the server ...
    text = gzip.decompress(cassette.read_bytes()).decode()
    for secret in (KEY, "SECRET", "Set-Cookie", "Authorization", "OpenAI-Organization"):
        assert secret not in text, secret  # ... but not the cassette
    assert len(json.loads(text)["interactions"]) == 2

    # Replay with the server gone, at another port, without a key.
    replay = LLMClient(ClientConfig(base_url="http://127.0.0.1:1/v1"))
    with use_cassette(cassette):
        assert replay.complete("xyz", max_tokens=1).text == "zyx"
        assert replay.complete("abc", max_tokens=1).text == "cba"


@pytest.mark.live
def test_a_repeated_request_reaches_the_server_once_and_the_cassette_once(tmp_path):
    cassette = tmp_path / "once.json.gz"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = LLMClient(ClientConfig(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", api_key=KEY))
        before = len(FakeOpenAI.seen_auth)
        with use_cassette(cassette, record=True):
            assert [client.complete("abc", max_tokens=1).text for _ in range(3)] == ["cba"] * 3
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(FakeOpenAI.seen_auth) - before == 1
    assert len(json.loads(gzip.decompress(cassette.read_bytes()))["interactions"]) == 1
