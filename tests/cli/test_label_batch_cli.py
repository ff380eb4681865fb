"""`vse label --batch` / ``--batch-import`` / ``--replay`` from the command line, without a server: the input file
a run writes (the run's own requests, the same bytes every time), its price, and one line for each misuse.
The round trip on real replies is in tests/cli/test_examples_replay.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from vse.cli.main import main
from vse.llm.batch import content_id
from vse.llm.client import encode_body

RUN = ["label", "efficientnet_lite0/_conv_head", "--method", "weight-label", "--units", "0:2", "--n", "2"]


def _run(*args: str):
    return CliRunner().invoke(main, [*RUN, *args], catch_exceptions=False)


def test_batch_writes_the_runs_requests_and_prices_them(tmp_path):
    out = tmp_path / "labels.jsonl"
    r = _run("--out", str(out), "--model", "gpt-4o-mini", "--price-per-1k-tokens", "0.15",
             "--batch", str(tmp_path / "in.jsonl"))  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (tmp_path / "in.jsonl").read_text().splitlines()]
    assert len(lines) == 4  # 2 units x 2 candidates, nothing recorded yet
    assert {x["body"]["model"] for x in lines} == {"gpt-4o-mini"} and len({x["body"]["seed"] for x in lines}) == 2
    for x in lines:
        assert set(x) == {"custom_id", "method", "url", "body"} and x["url"] == "/v1/completions"
        assert x["custom_id"] == content_id("completions", encode_body(x["body"]))
    assert f"wrote 4 requests of 2 unit(s) to {tmp_path / 'in.jsonl'}" in r.output
    m = re.search(r"at 0.15 per 1k tokens: ([0-9.]+) sent one by one, ([0-9.]+) through the Batch API", r.output)
    assert m and float(m[1]) > 0 and abs(float(m[2]) - float(m[1]) / 2) <= 0.005
    assert not out.exists() and not (tmp_path / "labels.cassette.json.gz").exists()  # nothing run, nothing sent
    again = _run("--out", str(out), "--model", "gpt-4o-mini", "--batch", str(tmp_path / "again.jsonl"))
    assert again.exit_code == 0 and (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "in.jsonl").read_bytes()


def test_options_that_clash_or_lack_a_cassette_say_so_in_one_line(tmp_path):
    r = _run("--batch", str(tmp_path / "in.jsonl"), "--replay")
    assert r.exit_code == 2 and "--batch and --replay do different things: give one of them" in r.output
    r = _run("--replay", "--base-url", "http://127.0.0.1:1/v1")
    assert r.exit_code == 2 and "--replay calls no server: leave out --base-url" in r.output
    r = _run("--replay", "--out", str(tmp_path / "l.jsonl"))
    assert r.exit_code == 2 and f"--replay: no cassette {tmp_path / 'l.cassette.json.gz'}" in r.output


def test_an_output_file_that_is_not_batch_output_is_named(tmp_path):
    bad = tmp_path / "out.jsonl"
    bad.write_text('{"custom_id": "vse-x-0", "response": null, "error": null}\n')
    r = _run("--out", str(tmp_path / "l.jsonl"), "--batch-import", str(bad))
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: {bad}: line 1 (vse-x-0) has neither a response nor an error"


def test_an_empty_output_file_or_another_runs_output_is_one_line_and_writes_nothing(tmp_path):
    examples = Path(__file__).resolve().parents[2] / "cassettes" / "examples"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = _run("--out", str(tmp_path / "l.jsonl"), "--batch-import", str(empty))
    assert r.exit_code == 1
    assert (
        r.output.strip()
        == f"Error: {empty}: no Batch API output line (an empty file?): give the batch's downloaded output"
    )
    # The recorded example answers units 0:2 with the model named; without --model the bodies (so the ids) differ.
    recorded = examples / "label-batch-output.jsonl"
    for other in (["--units", "2:4", "--model", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"], []):
        r = _run("--out", str(tmp_path / "l.jsonl"), *other, "--batch-import", str(recorded))
        assert r.exit_code == 1, r.output
        assert r.output.startswith(f"Error: {recorded}: none of its 4 line(s) answers a request of this command")
        assert "--model" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "l.cassette.json.gz").exists()


def test_with_the_llm_simulator_the_next_round_holds_a_pass_of_predictions(tmp_path):
    # Explanations imported from the recorded example (the local server's replies); the next --batch holds
    # the one-item predictions of Algorithm 1's first pass over the first candidate, for each unit.
    examples = Path(__file__).resolve().parents[2] / "cassettes" / "examples"
    run = ["--model", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "--out", str(tmp_path / "l.jsonl"),
           "--score", "--simulator", "one"]  # fmt: skip
    assert _run(*run, "--batch-import", str(examples / "label-batch-output.jsonl")).exit_code == 0
    r = _run(*run, "--batch", str(tmp_path / "s.jsonl"))
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(lines) == 100 and {x["body"]["max_tokens"] for x in lines} == {1}  # 2 units x 50 items
    assert "(model 'qwen2.5-coder-1.5b-instruct-q4_k_m.gguf' in every body; 4 more already in" in r.output
    r = _run(*run, "--batch", str(tmp_path / "again.jsonl"))
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "s.jsonl").read_bytes()
