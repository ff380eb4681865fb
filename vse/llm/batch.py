"""OpenAI Batch API: export a run's requests as a batch input file, import the output into a cassette.

The Batch API answers within 24 h at half the price. The round trip:

1. `export_batch_input` writes the requests a run would send (``(endpoint, payload)`` pairs, the
   same payloads `LLMClient` builds) as batch input JSONL: one ``{"custom_id", "method", "url",
   "body"}`` per line, the body being exactly the JSON the client would POST (`encode_body`).
2. Upload it and collect the output file (``{"custom_id", "response": {"status_code", "body"}, "error"}``).
3. `import_batch_output` pairs each output line with its request by ``custom_id`` and appends the
   successful ones (status 200 with a well-formed reply) to a vcrpy cassette in vse's format.
4. Run the same command again replaying that cassette (`use_cassette`): each request then
   matches its recorded body byte for byte and nothing goes to the network.

Identical requests sent more than once (e.g. repeated samples without a seed) are exported once
per occurrence, each with its own ``custom_id``, because a cassette plays each interaction once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.request import Request

from vse.atomic import read_jsonl
from vse.llm.cassettes import CASSETTE_SUFFIX, GzipJsonPersister, _JsonSerializer, scrub_request, scrub_response
from vse.llm.client import encode_body

#: The Batch API's cap on requests in one input file; larger runs are split into parts.
MAX_REQUESTS_PER_FILE = 50_000
ENDPOINTS = ("completions", "chat/completions")


def _url(endpoint: str) -> str:
    endpoint = endpoint.strip("/")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {ENDPOINTS}: {endpoint!r}")
    return f"/v1/{endpoint}"


def _custom_id(i: int, body: bytes) -> str:
    # The index keeps repeated identical requests apart; the hash lets a reader check the pairing.
    return f"vse-{i:07d}-{hashlib.sha256(body).hexdigest()[:12]}"


def batch_lines(requests: Iterable[tuple[str, dict[str, Any]]], *, model: str | None = None) -> list[dict]:
    """Batch input records for ``(endpoint, payload)`` pairs; ``model`` replaces each body's ``model``.

    The body is the client's own encoding decoded back, so ``encode_body(line["body"])`` equals
    the bytes `LLMClient` sends (None options dropped, keys sorted).
    """
    lines = []
    for i, (endpoint, payload) in enumerate(requests):
        payload = dict(payload)
        if model is not None:
            payload["model"] = model
        raw = encode_body(payload)
        lines.append(
            {"custom_id": _custom_id(i, raw), "method": "POST", "url": _url(endpoint), "body": json.loads(raw)}
        )
    return lines


def export_batch_input(
    requests: Iterable[tuple[str, dict[str, Any]]],
    path: str | Path,
    *,
    model: str | None = None,
    max_per_file: int = MAX_REQUESTS_PER_FILE,
) -> list[Path]:
    """Write batch input JSONL to ``path`` (or ``NAME.part001.jsonl``, ... above ``max_per_file``); returns
    the files written."""
    path = Path(path)
    lines = batch_lines(requests, model=model)
    chunks = [lines[i : i + max_per_file] for i in range(0, len(lines), max_per_file)] or [[]]
    paths = (
        [path]
        if len(chunks) == 1
        else [path.with_name(f"{path.stem}.part{k + 1:03d}{path.suffix}") for k in range(len(chunks))]
    )
    for p, chunk in zip(paths, chunks, strict=True):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(x, ensure_ascii=False, sort_keys=True) + "\n" for x in chunk), encoding="utf-8")
    return paths


def _read_jsonl(paths: Sequence[str | Path]) -> list[dict]:
    """Every line of the files, in order (a batch input or output file is one JSON object a line)."""
    return [rec for p in paths for rec in read_jsonl(p)]


def import_batch_output(
    inputs: Sequence[str | Path],
    outputs: Sequence[str | Path],
    cassette: str | Path,
    *,
    base_url: str = "https://api.openai.com/v1",
) -> dict[str, int]:
    """Append the successful replies of batch ``outputs`` to ``cassette`` (created if missing).

    ``inputs`` are the batch input files they answer (for each ``custom_id``'s request).
    ``base_url`` is the one the replaying run's client uses; only its scheme and host go into
    the stored URI (matching ignores them), the path comes from the batch line.
    Returns counts: ``imported``, ``failed`` (non-200, an ``error``, or a reply with no choices),
    ``missing`` (input lines with no output line).
    """
    cassette = Path(cassette)
    if not cassette.name.endswith(CASSETTE_SUFFIX):
        raise ValueError(f"cassette file names end in {CASSETTE_SUFFIX!r}: {cassette}")
    requests = {x["custom_id"]: x for x in _read_jsonl(inputs)}
    origin = urlsplit(base_url)
    new_requests, new_responses, failed, answered = [], [], 0, set()
    for line in _read_jsonl(outputs):
        cid = line.get("custom_id")
        if cid not in requests:
            raise ValueError(f"output line with custom_id {cid!r} is not in the input files")
        answered.add(cid)
        resp = line.get("response") or {}
        status = int(resp.get("status_code") or 0)
        req = requests[cid]
        response = {
            "status": {"code": status, "message": "OK" if status == 200 else ""},
            "headers": {"content-type": ["application/json"]},
            "body": {"string": json.dumps(resp.get("body"), ensure_ascii=False).encode("utf-8")},
        }
        # Only a 200 with a usable reply may be replayed; scrub_response applies the cassettes' own rule.
        kept = scrub_response(response) if status == 200 and not line.get("error") else None
        if kept is None:
            failed += 1
            continue
        request = Request(
            "POST",
            f"{origin.scheme}://{origin.netloc}{req['url']}",
            encode_body(req["body"]),
            {"Content-Type": "application/json"},
        )
        new_requests.append(scrub_request(request))
        new_responses.append(kept)
    try:
        old_requests, old_responses = GzipJsonPersister.load_cassette(cassette, _JsonSerializer)[:2]
    except CassetteNotFoundError:
        old_requests, old_responses = [], []
    GzipJsonPersister.save_cassette(
        cassette,
        {"requests": list(old_requests) + new_requests, "responses": list(old_responses) + new_responses},
        _JsonSerializer,
    )
    return {"imported": len(new_requests), "failed": failed, "missing": len(set(requests) - answered)}


def requests_from_cassette(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """The ``(endpoint, payload)`` pairs recorded in a cassette, in order (to re-send a run as a batch)."""
    requests, _ = GzipJsonPersister.load_cassette(path, _JsonSerializer)[:2]
    out = []
    for r in requests:
        endpoint = urlsplit(r.uri).path.split("/v1/", 1)[-1]
        out.append((endpoint, json.loads(r.body)))
    return out
