"""Recording against a real HTTP server on loopback that fails before it answers well.

The cassette must end up holding only the good reply (a failed reply would replay forever),
the retries must reach the server, and the replay must then work with no server at all.
pytest-socket blocks sockets for the suite; `enable_socket` lifts that for this test only, and
the server listens on 127.0.0.1 alone.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vse.llm.cassettes import use_cassette
from vse.llm.client import ClientConfig, LLMClient

GOOD = {
    "choices": [{"text": "fine", "finish_reason": "stop", "index": 0}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
}
# (status, body bytes): what the server answers to the 1st, 2nd, ... request.
SCRIPT = [
    (500, b'{"error": {"message": "boom"}}'),
    (200, b"<html>502 Bad Gateway</html>"),
    (200, json.dumps({"choices": [], "usage": {}}).encode()),
    (200, json.dumps(GOOD).encode()),
]


class Flaky(BaseHTTPRequestHandler):
    answers: list[tuple[int, bytes]] = []
    seen: int = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = Flaky.answers[min(Flaky.seen, len(Flaky.answers) - 1)]
        Flaky.seen += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.enable_socket
def test_failed_replies_are_retried_at_the_server_and_never_recorded(tmp_path):
    Flaky.answers, Flaky.seen = list(SCRIPT), 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"  # no /v1: the client normalises it
    cassette = tmp_path / "flaky.json.gz"
    try:
        client = LLMClient(ClientConfig(base_url=base, max_retries=5), sleep=lambda s: None)
        with use_cassette(cassette, record=True):
            assert client.complete("Hi", max_tokens=1).text == "fine"
        assert Flaky.seen == 4  # every retry reached the server
        # Resuming the recording replays the good reply: the server gets no request.
        with use_cassette(cassette, record=True):
            assert client.complete("Hi", max_tokens=1).text == "fine"
        assert Flaky.seen == 4
    finally:
        httpd.shutdown()
        httpd.server_close()

    interactions = json.loads(gzip.decompress(cassette.read_bytes()))["interactions"]
    assert len(interactions) == 1
    assert interactions[0]["response"]["status"]["code"] == 200
    assert json.loads(interactions[0]["response"]["body"]["string"]) == GOOD
    assert interactions[0]["request"]["uri"] == "http://localhost/v1/completions"

    # Replay with the server gone and no retries: a request that left the process would fail.
    replay = LLMClient(ClientConfig(base_url="http://127.0.0.1:1", max_retries=0))
    with use_cassette(cassette):
        assert replay.complete("Hi", max_tokens=1).text == "fine"
