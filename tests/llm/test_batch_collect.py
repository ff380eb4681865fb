"""`vse label --batch` / ``--batch-import``'s library half on real recorded traffic: a run's requests collected
against its cassette (`CollectingClient`), their Batch API input lines, and output files (with an error line,
a failed status, a missing line, an unknown id, a second part, the same file twice) paired back into a
cassette that replays the recorded replies. The shapes are OpenAI's (``BatchRequestInput``,
``BatchRequestOutput`` in its OpenAPI schema); output lines carry replies the local server really gave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vse.llm.batch import (
    BatchRequest,
    CollectingClient,
    content_id,
    import_replies,
    read_batch_output,
    requests_from_cassette,
    write_batch_input,
)
from vse.llm.cassettes import GzipJsonPersister, _JsonSerializer, use_cassette
from vse.llm.client import ClientConfig, LLMClient, encode_body
from vse.llm.errors import CassetteMiss, RequestDeferred
from vse.llm.pricing import dry_run
from vse.method.pipeline import _each_asked

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "bench" / "data" / "issue3-unit1089.json.gz"  # real recorded traffic
INPUT_KEYS = {"custom_id", "method", "url", "body"}
OUTPUT_KEYS = {"id", "custom_id", "response", "error"}


@pytest.fixture(scope="module")
def recorded():
    reqs = requests_from_cassette(RECORDED)[:6]
    _, responses = GzipJsonPersister.load_cassette(RECORDED, _JsonSerializer)[:2]
    bodies = [json.loads(r["body"]["string"]) for r in responses[:6]]
    pending = [BatchRequest(content_id(e, encode_body(p)), e, encode_body(p)) for e, p in reqs]
    return reqs, bodies, pending


def _client(cls=LLMClient):
    return cls(ClientConfig(base_url="http://replay.invalid/v1", model="local", max_retries=0))


def _complete(client, payload):
    kwargs = {k: v for k, v in payload.items() if k not in ("model", "prompt")}
    return client.complete(payload["prompt"], **kwargs)


def _ok(i: int, cid: str, body: dict) -> dict:
    return {"id": f"local-{i}", "custom_id": cid, "response": {"status_code": 200, "request_id": f"local-{i}",
            "body": body}, "error": None}  # fmt: skip


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_input_lines_have_the_documented_shape(tmp_path, recorded):
    reqs, _, pending = recorded
    path = write_batch_input(pending, tmp_path / "in.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == len(pending) == 6
    for line, (_endpoint, payload) in zip(lines, reqs, strict=True):
        assert set(line) == INPUT_KEYS and line["method"] == "POST" and line["url"] == "/v1/completions"
        assert encode_body(line["body"]) == encode_body(payload)  # the bytes the client sends
        assert len(line["custom_id"]) <= 64 and line["custom_id"].startswith("vse-")
    assert len({x["custom_id"] for x in lines}) == len(lines)  # unique within a batch, as the API requires


def test_content_ids_name_the_bytes():
    a = content_id("completions", b'{"prompt":"x"}')
    assert a == content_id("completions", b'{"prompt":"x"}') and len(a) <= 64
    assert a != content_id("chat/completions", b'{"prompt":"x"}') != content_id("completions", b'{"prompt":"y"}')


def test_collecting_client_replays_recorded_and_holds_back_the_rest(recorded):
    reqs, bodies, pending = recorded
    client = _client(CollectingClient)
    other = dict(reqs[0][1], seed=12345)  # not recorded
    with use_cassette(RECORDED):
        got = _complete(client, reqs[0][1])
        assert got.text == bodies[0]["choices"][0]["text"]
        with pytest.raises(RequestDeferred):
            _complete(client, other)
        with pytest.raises(CassetteMiss):  # a GET is never held back for a batch
            client.get_json("nothing-recorded")
    assert list(client.recorded) == [pending[0].custom_id]
    [held] = client.pending.values()
    assert held.body == encode_body(other) and held.endpoint == "completions"
    assert held.custom_id == content_id("completions", encode_body(other))


def test_a_request_sent_twice_is_one_request_of_the_batch(recorded):
    # A cassette answers every copy of a request it holds from one reply, so one line serves them all.
    reqs, _, pending = recorded
    client = _client(CollectingClient)
    other = dict(reqs[0][1], seed=12345)
    with use_cassette(RECORDED):
        for _ in range(2):
            _complete(client, reqs[0][1])
            with pytest.raises(RequestDeferred):
                _complete(client, other)
    assert list(client.recorded) == [pending[0].custom_id]
    assert list(client.pending) == [content_id("completions", encode_body(other))]


def test_output_with_an_error_a_failure_a_missing_line_and_a_second_part(tmp_path, recorded):
    reqs, bodies, pending = recorded
    ids = [r.custom_id for r in pending]
    by_id = {r.custom_id: r for r in pending}
    part1 = _write(
        tmp_path / "out1.jsonl",
        [
            _ok(2, ids[2], bodies[2]),  # out of order: pairing is by custom_id
            _ok(0, ids[0], bodies[0]),
            {"id": "local-1", "custom_id": ids[1], "response": None,
             "error": {"code": "batch_expired", "message": "This request could not be executed before the end"}},
            {"id": "local-3", "custom_id": ids[3], "response": {"status_code": 500, "request_id": "local-3",
             "body": {"error": {"message": "server overloaded", "type": "server_error"}}}, "error": None},
            _ok(9, "vse-not-this-run-0", bodies[0]),
        ],  # ids[4] and ids[5]: no line (missing)
    )  # fmt: skip
    cassette = tmp_path / "run.cassette.json.gz"
    report = import_replies(by_id, [part1], cassette)
    assert report.imported == (ids[2], ids[0]) and report.already == ()
    assert report.errors == (
        (ids[1], "batch_expired: This request could not be executed before the end"),
        (ids[3], "status 500: server overloaded"),
    )
    assert report.missing == (ids[4], ids[5]) and report.unknown == ("vse-not-this-run-0",)

    # the same file again, with the run's recorded ids: nothing added twice
    again = import_replies(by_id, [part1, part1], cassette, recorded=set(report.imported))
    assert again.imported == () and set(again.already) == {ids[0], ids[2]}
    with use_cassette(cassette) as c:
        assert len(c) == 2

    # a second part (the failed ones sent again, and the missing) completes it
    part2 = _write(tmp_path / "out2.jsonl", [_ok(k, ids[k], bodies[k]) for k in (1, 3, 4, 5)])
    rest = {cid: by_id[cid] for cid in ids if cid not in report.imported}
    done = import_replies(rest, [part2], cassette, recorded=set(report.imported))
    assert done.imported == (ids[1], ids[3], ids[4], ids[5]) and done.errors == done.missing == ()
    client = _client()
    with use_cassette(cassette) as c:
        assert len(c) == 6
        replies = [_complete(client, p) for _, p in reqs]
    assert [r.text for r in replies] == [b["choices"][0]["text"] for b in bodies]
    assert client.usage.prompt_tokens == sum(b["usage"]["prompt_tokens"] for b in bodies)


def test_an_output_line_without_its_fields_is_named(tmp_path):
    bad = _write(tmp_path / "out.jsonl", [{"custom_id": "vse-x-0", "response": None, "error": None}])
    with pytest.raises(ValueError, match=r"out.jsonl: line 1 \(vse-x-0\) has neither a response nor an error"):
        read_batch_output([bad])
    bad = _write(tmp_path / "out.jsonl", [{"id": "batch_req_1", "response": {"status_code": 200, "body": {}}}])
    with pytest.raises(ValueError, match="line 1 is not a Batch API output line"):
        read_batch_output([bad])


def test_batch_price_is_half(recorded):
    reqs, _, _ = recorded
    est = dry_run(reqs, price_per_1k=0.15)
    assert est.price > 0 and est.batch_price == pytest.approx(est.price / 2)
    assert dry_run(reqs).batch_price is None


def test_held_back_candidates_do_not_stop_the_others():
    asked = []

    def one(seed: int):
        asked.append(seed)
        if seed != 2:
            raise RequestDeferred(f"/v1/completions#{seed}")
        return seed

    with pytest.raises(RequestDeferred, match="#1"):
        _each_asked(one, [1, 2, 3])
    assert asked == [1, 2, 3]

    def broken(seed: int):
        asked.append(seed)
        raise ValueError("a real failure stops at once")

    asked.clear()
    with pytest.raises(ValueError):
        _each_asked(broken, [1, 2, 3])
    assert asked == [1]


@pytest.mark.parametrize("in_flight", [1, 3])
def test_held_back_predictions_do_not_stop_the_pass(in_flight):
    from vse.method.prompts import Example, Pair
    from vse.method.simulators import OneItemSimulator, SimContext

    from .fakes import ScriptedClient, last_line

    ctx = SimContext("weight-label", (Example("7", (Pair("beagle", 6),), "dogs"),), "insects")
    asked = []

    def held(prompt, _kw):
        asked.append(last_line(prompt).rstrip("\t"))
        raise RequestDeferred("/v1/completions")

    with pytest.raises(RequestDeferred):
        OneItemSimulator().predict(ScriptedClient(held), ctx, ["kite", "snail", "lacewing"], in_flight=in_flight)
    assert sorted(asked) == ["kite", "lacewing", "snail"]  # one collection holds the whole pass

    asked.clear()

    def fails(prompt, _kw):
        asked.append(last_line(prompt).rstrip("\t"))
        raise ValueError("a real failure")

    with pytest.raises(ValueError):
        OneItemSimulator().predict(ScriptedClient(fails), ctx, ["kite", "snail", "lacewing"], in_flight=1)
    assert asked == ["kite"]  # unchanged: one at a time, nothing is sent after a failure
