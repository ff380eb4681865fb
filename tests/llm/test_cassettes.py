"""Cassettes: replay-only misses, scrubbing, matching, order of identical requests, gzip format.

These run with the network blocked (pytest-socket), so every replay here proves it needs no
server. Interactions are "recorded" in-process through the cassette's own recording path
(`Cassette.append` runs the same scrubbing hooks as a live recording); the loopback recording
through a real HTTP server is in test_cassettes_live.py.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from pathlib import Path

import pytest
import requests
from vcr.request import Request

from vse.llm.cassettes import (
    CASSETTE_SUFFIX,
    CassetteMiss,
    GzipJsonPersister,
    ReplaySession,
    _JsonSerializer,
    cassette_sizes,
    gzip_bytes,
    scrub_request,
    scrub_response,
    use_cassette,
)
from vse.llm.client import ClientConfig, LLMClient, encode_body
from vse.llm.errors import LLMError

from .fakes import Sleeps, load_reply

KEY = "sk-test-SECRET-0123456789"
RECORDED_AT = "http://127.0.0.1:8765/v1"


def completion_request(prompt: str, base_url: str = RECORDED_AT, **options) -> Request:
    body = encode_body({"model": "local", "prompt": prompt, "temperature": 0.0, "max_tokens": 1, **options})
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {KEY}",
        "User-Agent": "python-requests/2",
        "OpenAI-Organization": "org-SECRET",
        "api-key": KEY,
        "Cookie": "session=SECRET",
    }
    return Request("POST", f"{base_url}/completions", body, headers)


def reply(text: str) -> dict:
    body = {
        "choices": [{"text": text, "index": 0, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
    return {
        "status": {"code": 200, "message": "OK"},
        "headers": {
            "content-type": ["application/json"],
            "Set-Cookie": ["session=SECRET; Path=/"],
            "date": ["Wed, 25 Nov 2026 23:16:24 GMT"],
            "x-request-id": ["e1cec34f"],
            "openai-organization": ["org-SECRET"],
            "openai-processing-ms": ["26862"],
        },
        "body": {"string": json.dumps(body).encode()},
    }


def record(path: Path, *interactions: tuple[Request, dict]) -> None:
    """Append interactions through the recording path (scrubbing hooks included), then save."""
    with use_cassette(path, record=True) as cassette:
        for request, response in interactions:
            cassette.append(request, response)


def replay_client(base_url: str = "http://127.0.0.1:9999/v1", api_key: str | None = KEY) -> tuple[LLMClient, Sleeps]:
    sleeps = Sleeps()
    return LLMClient(ClientConfig(base_url=base_url, api_key=api_key), sleep=sleeps, rng=random.Random(0)), sleeps


@pytest.fixture
def cassette(tmp_path) -> Path:
    return tmp_path / "exp" / f"neuron-1{CASSETTE_SUFFIX}"


# -- replay ----------------------------------------------------------------------------------------


def test_replay_needs_no_server_and_ignores_host_and_port(cassette):
    record(cassette, (completion_request("Hi"), reply(" there")))
    client, _ = replay_client(base_url="http://127.0.0.1:9999/v1")  # another port than at recording
    with use_cassette(cassette) as c:
        out = client.complete("Hi", max_tokens=1)
        assert c.play_count == 1 and c.all_played
    assert out.text == " there"
    assert client.usage.total == 3


def test_miss_on_a_missing_cassette_names_it_and_is_not_retried(cassette):
    client, sleeps = replay_client()
    with pytest.raises(CassetteMiss) as info, use_cassette(cassette):
        client.complete("Not recorded", max_tokens=1)
    err = info.value
    assert isinstance(err, LLMError)
    assert str(cassette) in str(err) and err.cassette == str(cassette)
    assert (err.method, err.path) == ("POST", "/v1/completions")
    assert '"prompt":"Not recorded"' in str(err)
    assert "does not exist" in str(err)
    assert sleeps == []


def test_miss_when_the_body_differs(cassette):
    record(cassette, (completion_request("Hi"), reply(" there")))
    client, _ = replay_client()
    with use_cassette(cassette), pytest.raises(CassetteMiss, match="No recorded request has this body"):
        client.complete("Hi", max_tokens=2)


def test_long_bodies_are_cut_in_the_message(cassette):
    client, _ = replay_client()
    with use_cassette(cassette), pytest.raises(CassetteMiss) as info:
        client.complete("x" * 5000, max_tokens=1)
    assert len(str(info.value)) < 800 and "characters)" in str(info.value)


def test_a_recording_holds_a_repeated_request_once_and_answers_it_from_the_cassette(cassette):
    # A fresh recording: the first "Hi" is stored; a second identical one, stored or sent, is answered with
    # the first reply (the network is blocked here: reaching the server would fail) and not stored again.
    client, _ = replay_client()
    with use_cassette(cassette, record=True) as c:
        c.append(completion_request("Hi"), reply(" one"))
        c.append(completion_request("Hi"), reply(" two"))  # e.g. two identical requests in flight at once
        assert [client.complete("Hi", max_tokens=1).text for _ in range(2)] == [" one", " one"]
    assert len(json.loads(gzip.decompress(cassette.read_bytes()))["interactions"]) == 1
    with use_cassette(cassette):  # the replay answers every repeat the same way
        assert [client.complete("Hi", max_tokens=1).text for _ in range(3)] == [" one"] * 3


def test_an_older_cassette_plays_identical_requests_in_recorded_order_then_the_last_again(cassette):
    # Written as cassettes were recorded before each request was held once: two copies of one request.
    pairs = [(scrub_request(completion_request("Hi")), scrub_response(reply(t))) for t in (" one", " two")]
    cassette.parent.mkdir(parents=True)
    GzipJsonPersister.save_cassette(
        cassette, {"requests": [r for r, _ in pairs], "responses": [a for _, a in pairs]}, _JsonSerializer
    )
    client, _ = replay_client()
    with use_cassette(cassette):
        assert [client.complete("Hi", max_tokens=1).text for _ in range(3)] == [" one", " two", " two"]


def test_seeds_make_repeated_samples_distinct(cassette):
    record(cassette, (completion_request("Hi", seed=2), reply(" b")), (completion_request("Hi", seed=1), reply(" a")))
    client, _ = replay_client()
    with use_cassette(cassette):
        assert client.complete("Hi", max_tokens=1, seed=1).text == " a"
        assert client.complete("Hi", max_tokens=1, seed=2).text == " b"


def test_other_requests_code_gets_cassette_miss_too(cassette):
    record(cassette, (completion_request("Hi"), reply(" there")))
    # Outside the client, vcrpy's own error escapes `requests`; the block's exit translates it.
    with pytest.raises(CassetteMiss, match="GET /v1/models"), use_cassette(cassette):
        requests.get("http://127.0.0.1:9999/v1/models", timeout=1)


def test_recording_mode_replays_what_is_already_recorded(cassette):
    # Resumable recording: a recorded request is served from the cassette (the network is
    # blocked here, so reaching the server would fail) and the file is left unchanged.
    record(cassette, (completion_request("Hi"), reply(" there")))
    before = cassette.read_bytes()
    client, _ = replay_client()
    with use_cassette(cassette, record=True):
        assert client.complete("Hi", max_tokens=1).text == " there"
    assert cassette.read_bytes() == before


def test_real_reply_with_logprobs_replays(cassette):
    body = load_reply("completion_logprobs.json")
    response = reply("")
    response["body"]["string"] = json.dumps(body).encode()
    record(cassette, (completion_request("Count: 1, 2, 3,", logprobs=5), response))
    client, _ = replay_client()
    with use_cassette(cassette):
        out = client.complete("Count: 1, 2, 3,", max_tokens=1, logprobs=5)
    assert [t.token for t in out.tokens] == [" ", "4", ","]


def test_a_replay_session_answers_as_vcrpy_does(cassette):
    # ReplaySession (what `vse reproduce` replays through) skips requests' and vcrpy's HTTP stack: the same
    # completions, play counts and misses as a client whose requests go through the patched connection.
    body = load_reply("completion_logprobs.json")
    logprobs = reply("")
    logprobs["body"]["string"] = json.dumps(body).encode()
    pairs = [(completion_request("Hi"), reply(t)) for t in (" one", " two")]  # an older cassette's two copies
    pairs.append((completion_request("Count: 1, 2, 3,", logprobs=5), logprobs))
    cassette.parent.mkdir(parents=True)
    GzipJsonPersister.save_cassette(
        cassette,
        {"requests": [scrub_request(r) for r, _ in pairs], "responses": [scrub_response(a) for _, a in pairs]},
        _JsonSerializer,
    )

    def run(through_session: bool) -> tuple[list, list, str]:
        client, _ = replay_client()
        with use_cassette(cassette) as c:
            if through_session:
                client.session = ReplaySession(c)
            outs = [client.complete("Hi", max_tokens=1) for _ in range(3)]
            outs.append(client.complete("Count: 1, 2, 3,", max_tokens=1, logprobs=5))
            with pytest.raises(CassetteMiss) as info:
                client.complete("Not recorded", max_tokens=1)
            counts = sorted(c.play_counts.items())
        return outs, counts, str(info.value)

    assert run(True) == run(False)
    outs, counts, miss = run(True)
    assert [o.text for o in outs[:3]] == [" one", " two", " two"] and counts == [(0, 1), (1, 2), (2, 1)]
    assert [t.token for t in outs[3].tokens] == [" ", "4", ","] and outs[3].usage.total > 0
    assert str(cassette) in miss and '"prompt":"Not recorded"' in miss


def test_cassette_names_must_end_in_the_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.json\.gz"), use_cassette(tmp_path / "x.yaml"):
        pass


# -- scrubbing -------------------------------------------------------------------------------------


def test_recorded_cassette_holds_no_key_cookie_or_ids(cassette):
    record(cassette, (completion_request("Hi"), reply(" there")))
    text = gzip.decompress(cassette.read_bytes()).decode()
    for secret in (KEY, "SECRET", "Authorization", "Set-Cookie", "e1cec34f", "2026", "python-requests", "8765"):
        assert secret not in text, secret
    data = json.loads(text)
    (interaction,) = data["interactions"]
    assert interaction["request"]["headers"] == {"Content-Type": ["application/json"]}
    assert interaction["request"]["uri"] == "http://localhost/v1/completions"
    assert interaction["response"]["headers"] == {"content-type": ["application/json"]}


def test_scrub_request_copies_and_keeps_only_content_type():
    original = completion_request("Hi")
    scrubbed = scrub_request(original)
    assert dict(scrubbed.headers) == {"Content-Type": "application/json"}
    assert original.headers["Authorization"] == f"Bearer {KEY}"  # the live request keeps its key
    assert scrubbed.uri == "http://localhost/v1/completions"
    assert scrubbed.body == original.body


def test_scrub_request_keeps_remote_hosts():
    req = completion_request("Hi", base_url="https://api.openai.com/v1")
    assert scrub_request(req).uri == "https://api.openai.com/v1/completions"


def test_scrub_response_keeps_only_content_type():
    original = reply("x")
    scrubbed = scrub_response(original)
    assert scrubbed["headers"] == {"content-type": ["application/json"]}
    assert "Set-Cookie" in original["headers"]
    assert scrubbed["body"] == original["body"] and scrubbed["status"] == original["status"]


def test_gzip_encoded_responses_are_stored_decoded(cassette):
    response = reply(" zipped")
    response["body"]["string"] = gzip.compress(response["body"]["string"])
    response["headers"]["Content-Encoding"] = ["gzip"]
    record(cassette, (completion_request("Hi"), response))
    interaction = json.loads(gzip.decompress(cassette.read_bytes()))["interactions"][0]
    assert "Content-Encoding" not in interaction["response"]["headers"]
    client, _ = replay_client()
    with use_cassette(cassette):
        assert client.complete("Hi", max_tokens=1).text == " zipped"


# -- format ----------------------------------------------------------------------------------------


def test_gzip_is_deterministic():
    a, b = gzip_bytes(b"hello" * 100), gzip_bytes(b"hello" * 100)
    assert a == b
    assert a[4:8] == b"\0\0\0\0"  # mtime
    assert a[3] & 0x08 == 0  # no file name in the header
    assert gzip.decompress(a) == b"hello" * 100


def test_rerecording_identical_traffic_gives_identical_bytes(tmp_path):
    one, two = tmp_path / f"a{CASSETTE_SUFFIX}", tmp_path / "sub" / f"b{CASSETTE_SUFFIX}"
    for path in (one, two):
        record(path, (completion_request("Hi"), reply(" there")), (completion_request("Ho"), reply(" hum")))
    assert one.read_bytes() == two.read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


def test_persister_round_trip(tmp_path):
    path = tmp_path / f"c{CASSETTE_SUFFIX}"
    request = scrub_request(completion_request("Hi"))
    response = scrub_response(reply("x"))
    GzipJsonPersister.save_cassette(
        path, copy.deepcopy({"requests": [request], "responses": [response]}), _JsonSerializer
    )
    requests_, responses = GzipJsonPersister.load_cassette(path, _JsonSerializer)
    assert requests_[0].body == request.body and requests_[0].uri == request.uri
    assert responses[0]["body"]["string"] == response["body"]["string"]
    first = path.read_bytes()
    GzipJsonPersister.save_cassette(path, {"requests": [request], "responses": [response]}, _JsonSerializer)
    assert path.read_bytes() == first


def test_gzip_shrinks_repeated_few_shot_prefixes(tmp_path):
    path = tmp_path / f"big{CASSETTE_SUFFIX}"
    prefix = "".join(f"Example {i}: a dog on grass\t{i % 10}\n" for i in range(60))
    record(path, *[(completion_request(prefix + f"item {i}\t"), reply(str(i % 10))) for i in range(30)])
    raw = len(gzip.decompress(path.read_bytes()))
    assert path.stat().st_size < raw / 10


def test_cassette_sizes(tmp_path):
    for name in ("b", "a"):
        record(tmp_path / "x" / f"{name}{CASSETTE_SUFFIX}", (completion_request("Hi"), reply(" there")))
    (tmp_path / "notes.txt").write_text("ignored")
    sizes = cassette_sizes(tmp_path)
    assert list(sizes) == [tmp_path / "x" / f"a{CASSETTE_SUFFIX}", tmp_path / "x" / f"b{CASSETTE_SUFFIX}"]
    assert all(size == p.stat().st_size for p, size in sizes.items())
