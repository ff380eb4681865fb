"""`vse label` against an endpoint that is down, or dies mid-run, and two runs on one --out.

The label runs are real (vse.method.pipeline on the fixtures, vse's LLMClient); the server is bench.stub_server in
its own process, killed with SIGKILL as a crash would.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from vse.cli.main import main
from vse.method.label_record import LabelRecord
from vse.studies.layer_labelling import label_units

REPO = Path(__file__).resolve().parents[2]
LAYER = "efficientnet_lite0/_conv_head"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vse: error: ")]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.enable_socket
def test_a_closed_port_stops_the_run_within_seconds_with_the_resume_command(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    t0 = time.monotonic()
    result = CliRunner().invoke(
        main,
        [
            "label",
            LAYER,
            "--method",
            "weight-label",
            "--units",
            "0:40",
            "--workers",
            "4",
            "--base-url",
            url,
            "--out",
            "o.jsonl",
            "--no-progress",
        ],
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 20, elapsed  # 0.1 s on an idle machine
    assert result.exit_code == 1, (result.output, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and "HTTPConnectionPool" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"{url} is down" in line and "0 of 40 units are done in o.jsonl" in line
    resume = line.split("resume with: ", 1)[1]
    assert shlex.split(resume) == [
        "vse",
        "label",
        LAYER,
        "--method",
        "weight-label",
        "--units",
        "0:40",
        "--workers",
        "4",
        "--base-url",
        url,
        "--no-progress",
        "--out",
        "o.jsonl",
    ]
    # Nothing was recorded against the units: they are not failures, the endpoint was.
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]  # stderr, outside pytest
    assert retries and all(len(x) < 80 and x.startswith("vse: 127.0.0.1:") for x in retries)


def _start_stub(port: int = 0, delay: float = 0.05) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.stub_server", "--delay", str(delay), "--port", str(port), "--lifetime", "90"],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def test_a_server_killed_mid_run_stops_it_and_the_resume_command_finishes_it(tmp_path):
    stub, url = _start_stub()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    out = tmp_path / "o.jsonl"
    vse = [sys.executable, "-c", "from vse.cli.main import main; main()"]  # the `vse` script, in this interpreter
    cmd = vse + [
        "label",
        LAYER,
        "--method",
        "weight-label",
        "--units",
        "0:40",
        "--workers",
        "4",
        "--base-url",
        url,
        "--out",
        str(out),
        "--no-progress",
    ]
    run = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 8):
            assert run.poll() is None, run.stderr.read()
            time.sleep(0.01)
        stub.send_signal(signal.SIGKILL)
        stub.wait(5)
        killed = time.monotonic()
        _, stderr = run.communicate(timeout=120)
        stopped_after = time.monotonic() - killed
    finally:
        run.kill()
        stub.kill()
    # 0.5-0.8 s on an idle machine; the bound leaves room for a loaded one. What does not depend on
    # the load: a handful of retries in all, not five per remaining unit.
    assert stopped_after < 60, stopped_after
    assert run.returncode == 1, stderr
    assert len([x for x in stderr.splitlines() if "; retry " in x]) <= 12, stderr
    assert "Traceback" not in stderr
    [line] = error_lines(stderr)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    n = len(records)
    assert 8 <= n < 40 and all(r.get("status") != "failed" for r in records)
    assert f"{n} of 40 units are done" in line, line
    resume = shlex.split(line.split("resume with: ", 1)[1])
    assert resume[:2] == ["vse", "label"] and resume[resume.index("--out") + 1] == str(out)

    stub, url2 = _start_stub(port, delay=0.0)  # the server is back, on the same port
    try:
        assert url2 == url
        done = subprocess.run(vse + resume[1:], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    finally:
        stub.kill()
        stub.wait()
    assert done.returncode == 0, done.stderr
    assert f"skipped {n} already done" in done.stderr
    final = [json.loads(x) for x in out.read_text().splitlines()]
    assert final[:n] == records  # nothing computed before the crash was lost or rewritten
    assert Counter(r["unit"] for r in final) == Counter(range(40))


def test_two_runs_on_one_out_get_one_clear_line(tmp_path, monkeypatch):
    out = tmp_path / "o.jsonl"
    started, release = threading.Event(), threading.Event()

    def slow(unit, url):
        started.set()
        release.wait(10)
        return LabelRecord(unit)

    holder = threading.Thread(
        target=label_units, args=([0], slow), kwargs=dict(out=out, base_urls=["x"], progress=False)
    )
    holder.start()
    try:
        assert started.wait(10)
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(
            main,
            [
                "label",
                LAYER,
                "--method",
                "weight-label",
                "--units",
                "0:3",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--out",
                str(out),
                "--no-progress",
            ],
        )
    finally:
        release.set()
        holder.join()
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"{out} is being written by another labelling run" in line and "--out" in line


@pytest.mark.enable_socket
@pytest.mark.parametrize(
    "args",
    [
        ["explain", f"{LAYER}/3", "--method", "weight-label"],
        [
            "score",
            f"{LAYER}/3",
            "--target",
            "weight-label",
            "--explanation",
            "dogs",
            "--mode",
            "one",
            "--protocol",
            "uniform",
        ],
        ["validate", LAYER, "--units", "1,2,3", "--methods", "weight-label", "--targets", "weight-label"],
    ],
)
def test_every_llm_command_stops_within_seconds_on_a_closed_port(args, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    t0 = time.monotonic()
    result = CliRunner().invoke(main, args + ["--base-url", url])
    # 3.5-5 s on an idle machine (one thread: 5 tries, backoff 0.5 s doubling); the bound leaves room
    # for a loaded one. Load-independent: 4 retries in all, then the breaker, not 5 per call.
    assert time.monotonic() - t0 < 60
    assert len([r for r in caplog.records if "; retry " in r.getMessage()]) <= 4
    assert result.exit_code == 1, (result.output, result.stderr, result.exception)
    [line] = error_lines(result.stderr)
    assert f"{url} is down" in line and "refused the connection" in line and "HTTPConnectionPool" not in result.stderr


class _Refuses(__import__("http.server").server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that refuses every request: a wrong API key."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(
            {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.mark.enable_socket
def test_an_endpoint_that_refuses_every_request_stops_the_run_after_the_first_units(tmp_path, monkeypatch):
    from http.server import ThreadingHTTPServer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(
            main,
            [
                "label",
                LAYER,
                "--method",
                "weight-label",
                "--units",
                "0:40",
                "--workers",
                "4",
                "--base-url",
                url,
                "--out",
                "o.jsonl",
                "--no-progress",
            ],
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.exit_code == 1, (result.stderr, result.exception)
    [line] = error_lines(result.stderr)
    assert "stopped: HTTP 401" in line and "Incorrect API key provided" in line and "the API key" in line
    assert "0 of 40 units are done" in line and "resume with: vse label" in line
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""
