"""Batch API round trip on recorded traffic: export a real cassette's requests, import an output file
built from its real replies, and replay through use_cassette + LLMClient with identical results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vse.llm.batch import batch_lines, export_batch_input, import_batch_output, requests_from_cassette
from vse.llm.cassettes import GzipJsonPersister, _JsonSerializer, use_cassette
from vse.llm.client import ClientConfig, LLMClient, encode_body
from vse.llm.errors import CassetteMiss

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "bench" / "data" / "issue3-unit1089.json.gz"  # real recorded traffic
FAILED_AT = {1, 2}  # output lines made to fail: a 500 and a line with an error


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    reqs = requests_from_cassette(RECORDED)
    _, responses = GzipJsonPersister.load_cassette(RECORDED, _JsonSerializer)[:2]
    [inp] = export_batch_input(reqs, tmp / "input.jsonl")
    lines = [json.loads(x) for x in inp.read_text().splitlines()]
    out = []
    for i, (line, resp) in enumerate(zip(lines, responses, strict=True)):
        body = json.loads(resp["body"]["string"])
        if i == 1:
            out.append({"custom_id": line["custom_id"], "response": {"status_code": 500, "body": {"error": "x"}}})
        elif i == 2:
            out.append({"custom_id": line["custom_id"], "response": None, "error": {"message": "expired"}})
        else:
            out.append({"custom_id": line["custom_id"], "response": {"status_code": 200, "body": body}, "error": None})
    out.reverse()  # the Batch API does not keep input order; pairing is by custom_id
    (tmp / "output.jsonl").write_text("".join(json.dumps(x) + "\n" for x in out))
    cassette = tmp / "imported.json.gz"
    counts = import_batch_output([inp], [tmp / "output.jsonl"], cassette, base_url="http://127.0.0.1:9999/v1")
    return reqs, lines, cassette, counts


def test_export_matches_the_clients_bytes(round_trip):
    reqs, lines, _, _ = round_trip
    assert len(lines) == len(reqs) == 3190
    assert {x["method"] for x in lines} == {"POST"} and {x["url"] for x in lines} == {"/v1/completions"}
    assert len({x["custom_id"] for x in lines}) == len(lines)
    for (_endpoint, payload), line in zip(reqs[:50], lines[:50], strict=True):
        assert encode_body(line["body"]) == encode_body(payload)


def test_export_splits_and_overrides_model(tmp_path):
    reqs = [
        ("chat/completions", {"model": "local", "messages": [{"role": "user", "content": str(i)}], "seed": None})
        for i in range(5)
    ]
    paths = export_batch_input(reqs, tmp_path / "in.jsonl", model="gpt-4o-mini", max_per_file=2)
    assert [p.name for p in paths] == ["in.part001.jsonl", "in.part002.jsonl", "in.part003.jsonl"]
    lines = [json.loads(x) for p in paths for x in p.read_text().splitlines()]
    assert len(lines) == 5 and all(x["body"]["model"] == "gpt-4o-mini" and "seed" not in x["body"] for x in lines)
    assert lines[0]["url"] == "/v1/chat/completions"
    with pytest.raises(ValueError, match="endpoint"):
        batch_lines([("embeddings", {})])


def test_only_successful_replies_are_imported(round_trip):
    reqs, _, cassette, counts = round_trip
    assert counts == {"imported": len(reqs) - 2, "failed": 2, "missing": 0}
    with use_cassette(cassette) as c:
        assert len(c) == len(reqs) - 2


def _call(client: LLMClient, payload: dict):
    kwargs = {k: v for k, v in payload.items() if k not in ("model", "prompt")}
    return client.complete(payload["prompt"], **kwargs)


def test_replay_of_imported_cassette_equals_the_recording(round_trip):
    reqs, _, cassette, _ = round_trip
    picks = [0, 3, 4, 1000, 3187, 3188, 3189]
    assert not FAILED_AT & set(picks)
    got = {}
    for name, path in (("recorded", RECORDED), ("imported", cassette)):
        client = LLMClient(ClientConfig(base_url="http://127.0.0.1:8765/v1", model="local", max_retries=0))
        with use_cassette(path):
            got[name] = [_call(client, reqs[i][1]) for i in picks]
        got[name + "_usage"] = client.usage
    assert got["imported"] == got["recorded"]
    assert got["imported_usage"] == got["recorded_usage"] and got["imported_usage"].prompt_tokens > 0
    # a request whose batch line failed is not in the cassette
    client = LLMClient(ClientConfig(base_url="http://127.0.0.1:8765/v1", model="local", max_retries=0))
    with use_cassette(cassette), pytest.raises(CassetteMiss):
        _call(client, reqs[1][1])


def test_import_appends_to_an_existing_cassette(tmp_path, round_trip):
    _, lines, _, _ = round_trip
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(x) + "\n" for x in lines[:3]))
    body = {"choices": [{"text": " a", "index": 0, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}}
    for k in range(3):
        (tmp_path / f"out{k}.jsonl").write_text(
            json.dumps({"custom_id": lines[k]["custom_id"], "response": {"status_code": 200, "body": body}}) + "\n"
        )
    cassette = tmp_path / "c.json.gz"
    assert import_batch_output([inp], [tmp_path / "out0.jsonl"], cassette)["missing"] == 2
    import_batch_output([inp], [tmp_path / "out1.jsonl", tmp_path / "out2.jsonl"], cassette)
    with use_cassette(cassette) as c:
        assert len(c) == 3
    with pytest.raises(ValueError, match="not in the input"):
        import_batch_output([tmp_path / "out0.jsonl"], [tmp_path / "out1.jsonl"], cassette)
