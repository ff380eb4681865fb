"""A stub OpenAI-compatible server on 127.0.0.1 that answers after a fixed delay (for benchmarks and tests).

It answers ``POST /v1/completions``, ``POST /v1/chat/completions`` and ``GET /v1/models`` with
well-formed replies (``choices``, ``usage``), so vse's client parses them as it would a real
server's; the generated text is a fixed sentence. It is bounded so a forgotten one cannot run
on: after ``max_requests`` requests it answers 503 and shuts down, and it stops after
``lifetime_s`` seconds whatever happens.

    python -m bench.stub_server [--delay 0.05] [--port 0] [--max-requests 100000] [--lifetime 600]

prints ``http://127.0.0.1:PORT/v1`` on its first stdout line once it listens.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY_TEXT = " things that are round and red."


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    # 16+ concurrent clients connect at once; the default backlog of 5 would refuse some.
    request_queue_size = 128

    def __init__(
        self, port: int = 0, *, delay_s: float = 0.05, max_requests: int = 100_000, lifetime_s: float = 600.0
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.delay_s = delay_s
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.count = 0
        self.count_lock = threading.Lock()
        self._timer = threading.Timer(lifetime_s, self._stop)
        self._timer.daemon = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def _stop(self) -> None:
        # shutdown() blocks until serve_forever returns, so never call it on the serving thread
        threading.Thread(target=self.shutdown, daemon=True).start()

    def start(self) -> StubServer:
        """Serve on a background thread (for tests); `stop` ends it."""
        self._timer.start()
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self.shutdown()
        self.server_close()

    def run(self) -> None:
        """Serve on this thread until the request or time bound."""
        self._timer.start()
        try:
            self.serve_forever()
        finally:
            self._timer.cancel()
            self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's connection pool reuses connections
    server: StubServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two small writes; with Nagle on, the second waits for the
        # client's delayed ACK (~40 ms on Linux), which measured as a fixed 45 ms on every call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # one line per request would swamp a benchmark
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _admit(self) -> bool:
        with self.server.count_lock:
            self.server.count += 1
            over = self.server.count > self.server.max_requests
        if over:
            self._send(503, {"error": {"message": "stub server request bound reached"}})
            self.server._stop()
        return not over

    def do_GET(self) -> None:
        if not self._admit():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "vse"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._admit():
            return
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        path = self.path.rstrip("/")
        if path not in ("/v1/completions", "/v1/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        time.sleep(self.server.delay_s)
        model = req.get("model", "stub")
        # Rough token counts (4 characters a token) so usage sums look like a real run's.
        if path == "/v1/completions":
            prompt_chars = len(str(req.get("prompt", "")))
            choice = {"text": REPLY_TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}
            obj = "text_completion"
        else:
            prompt_chars = sum(len(str(m.get("content", ""))) for m in req.get("messages", []))
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT.strip()},
                "logprobs": None,
                "finish_reason": "stop",
            }
            obj = "chat.completion"
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": 8}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._send(
            200,
            {
                "id": f"stub-{self.server.count}",
                "object": obj,
                "created": 0,
                "model": model,
                "choices": [choice],
                "usage": usage,
            },
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds before each completion reply")
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--lifetime", type=float, default=600.0, help="seconds before it stops on its own")
    args = ap.parse_args(argv)
    server = StubServer(args.port, delay_s=args.delay, max_requests=args.max_requests, lifetime_s=args.lifetime)
    print(server.base_url, flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
