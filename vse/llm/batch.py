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

`vse label --batch` / ``--batch-import`` (`vse.studies.label_batch`) do the same for a whole run without
keeping the input file: a `CollectingClient` replays the run against its cassette and holds back each
request the cassette lacks (`BatchRequest`, named by `content_id`: its bytes, so the same command finds
the same ids again), and `import_replies` pairs output lines with those by
``custom_id``, skipping what the cassette already holds. `run_batch_locally` answers an input file
from an OpenAI-compatible server (llama.cpp, vLLM) in the Batch API's output shape.

The shapes (OpenAI's OpenAPI schema, ``BatchRequestInput`` and ``BatchRequestOutput``): an input line is
``{"custom_id", "method": "POST", "url": "/v1/completions" | "/v1/chat/completions", "body"}``, custom ids
unique within a batch; an output line is ``{"id", "custom_id", "response": {"status_code", "request_id",
"body"} | null, "error": {"code", "message"} | null}``, in any order, and a request may have no line
(an expired batch).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests as http
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.request import Request

from vse.atomic import read_jsonl, write_atomic
from vse.llm.cassettes import (
    CASSETTE_SUFFIX,
    GzipJsonPersister,
    _JsonSerializer,
    scrub_request,
    scrub_response,
    translate_vcr_error,
)
from vse.llm.client import LLMClient, encode_body
from vse.llm.errors import RequestDeferred

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


def _response(line: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """An output line as a cassette response, or None and why it cannot be replayed."""
    error = line.get("error")
    resp = line.get("response") or {}
    status = int(resp.get("status_code") or 0) if isinstance(resp, Mapping) else 0
    if error:
        why = f"{error.get('code') or 'error'}: {error.get('message') or ''}" if isinstance(error, Mapping) else error
        return None, str(why).strip()
    body = resp.get("body") if isinstance(resp, Mapping) else None
    response = {
        "status": {"code": status, "message": "OK" if status == 200 else ""},
        "headers": {"content-type": ["application/json"]},
        "body": {"string": json.dumps(body, ensure_ascii=False).encode("utf-8")},
    }
    # Only a 200 with a usable reply may be replayed; scrub_response applies the cassettes' own rule.
    kept = scrub_response(response) if status == 200 else None
    if kept is not None:
        return kept, ""
    if status != 200:
        detail = body.get("error") if isinstance(body, Mapping) else None
        message = detail.get("message") if isinstance(detail, Mapping) else detail
        return None, f"status {status}" + (f": {message}" if message else "")
    return None, "status 200 without a usable reply (no choices)"


def _request(url_path: str, body: bytes, base_url: str) -> Request:
    origin = urlsplit(base_url)
    return Request("POST", f"{origin.scheme}://{origin.netloc}{url_path}", body, {"Content-Type": "application/json"})


def _append(cassette: Path, pairs: Sequence[tuple[Request, dict[str, Any]]]) -> None:
    """Append (request, response) pairs to ``cassette`` (created if missing), in vse's cassette format."""
    try:
        old_requests, old_responses = GzipJsonPersister.load_cassette(cassette, _JsonSerializer)[:2]
    except CassetteNotFoundError:
        old_requests, old_responses = [], []
    GzipJsonPersister.save_cassette(
        cassette,
        {
            "requests": list(old_requests) + [scrub_request(r) for r, _ in pairs],
            "responses": list(old_responses) + [resp for _, resp in pairs],
        },
        _JsonSerializer,
    )


def _check_cassette_name(cassette: Path) -> None:
    if not cassette.name.endswith(CASSETTE_SUFFIX):
        raise ValueError(f"cassette file names end in {CASSETTE_SUFFIX!r}: {cassette}")


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
    _check_cassette_name(cassette)
    requests = {x["custom_id"]: x for x in _read_jsonl(inputs)}
    pairs, failed, answered = [], 0, set()
    for line in _read_jsonl(outputs):
        cid = line.get("custom_id")
        if cid not in requests:
            raise ValueError(f"output line with custom_id {cid!r} is not in the input files")
        answered.add(cid)
        kept, _why = _response(line)
        if kept is None:
            failed += 1
            continue
        req = requests[cid]
        pairs.append((_request(req["url"], encode_body(req["body"]), base_url), kept))
    _append(cassette, pairs)
    return {"imported": len(pairs), "failed": failed, "missing": len(set(requests) - answered)}


# -- a whole run's requests, collected by replaying it (vse label --batch / --batch-import) -------------


def content_id(endpoint: str, body: bytes) -> str:
    """A request's ``custom_id`` from its bytes: the same request gets the same id in every collection.

    A cassette answers every copy of a request it holds from one reply (`vse.llm.cassettes`), so a run's
    identical requests are one request of the batch. 45 characters, within the Batch API's 64."""
    digest = hashlib.sha256(_url(endpoint).encode("utf-8") + b"\n" + body).hexdigest()[:40]
    return f"vse-{digest}"


@dataclass(frozen=True)
class BatchRequest:
    """One POST of a run: its ``custom_id`` (`content_id`), endpoint and the exact bytes the client sends."""

    custom_id: str
    endpoint: str
    body: bytes

    def line(self) -> dict[str, Any]:
        """The Batch API input line (``BatchRequestInput``)."""
        return {
            "custom_id": self.custom_id,
            "method": "POST",
            "url": _url(self.endpoint),
            "body": json.loads(self.body),
        }


class CollectingClient(LLMClient):
    """An `LLMClient` for a replay (inside ``use_cassette(path, record=False)``) that collects a run's requests.

    Each POST the cassette answers is noted in `recorded` and replayed; each one it lacks is noted in
    `pending` and raises `RequestDeferred` instead of going anywhere. A GET the cassette lacks (the
    server's identity, asked best effort) stays a `CassetteMiss`. Thread-safe, like the client."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._notes = threading.Lock()
        self.recorded: dict[str, BatchRequest] = {}
        self.pending: dict[str, BatchRequest] = {}

    def _note(self, url: str, data: bytes, into: dict[str, BatchRequest]) -> None:
        endpoint = url[len(self.config.base_url.rstrip("/")) :].strip("/")
        request = BatchRequest(content_id(endpoint, data), endpoint, data)
        with self._notes:
            into[request.custom_id] = request  # a request sent twice is one request of the batch

    def _request(self, url: str, data: bytes | None) -> http.Response:
        try:
            response = super()._request(url, data)
        except Exception as exc:
            if data is None or translate_vcr_error(exc) is None:
                raise
            self._note(url, data, self.pending)
            raise RequestDeferred(urlsplit(url).path) from None
        if data is not None:
            self._note(url, data, self.recorded)
        return response


def write_batch_input(requests: Sequence[BatchRequest], path: str | Path) -> Path:
    """``requests`` as one Batch API input file (one ``BatchRequestInput`` a line, sorted keys)."""
    if len(requests) > MAX_REQUESTS_PER_FILE:
        raise ValueError(f"{len(requests)} requests: the Batch API takes at most {MAX_REQUESTS_PER_FILE} a file")
    text = "".join(json.dumps(r.line(), ensure_ascii=False, sort_keys=True) + "\n" for r in requests)
    write_atomic(path, text.encode("utf-8"))
    return Path(path)


def read_batch_output(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every line of Batch API output files, each checked to be a ``BatchRequestOutput`` with a
    ``custom_id``; a bad line raises ValueError naming the file and line."""
    lines = []
    for p in paths:
        for lineno, line in enumerate(read_jsonl(p), 1):
            if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                raise ValueError(f"{p}: line {lineno} is not a Batch API output line (no custom_id)")
            if line.get("response") is None and not line.get("error"):
                raise ValueError(f"{p}: line {lineno} ({line['custom_id']}) has neither a response nor an error")
            lines.append(line)
    return lines


@dataclass(frozen=True)
class ImportReport:
    """What `import_replies` did. imported: ids appended to the cassette; already: ids the cassette held
    before (an output imported twice); errors: (id, why) of lines that cannot be replayed; missing: ids
    of the run's pending requests with no output line; unknown: ids that are not this run's requests."""

    cassette: Path
    imported: tuple[str, ...]
    already: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]
    missing: tuple[str, ...]
    unknown: tuple[str, ...]


def import_replies(
    pending: Mapping[str, BatchRequest],
    outputs: Sequence[str | Path],
    cassette: str | Path,
    *,
    recorded: Collection[str] = (),
    base_url: str = "https://api.openai.com/v1",
) -> ImportReport:
    """Append to ``cassette`` the successful replies of ``outputs`` to the ``pending`` requests.

    ``recorded``: ids the cassette already answers; their lines are skipped (importing twice adds
    nothing). A line for an id met twice in ``outputs`` is imported once. Failed lines and missing
    ones are reported, never stored: the next collection finds those requests pending again."""
    cassette = Path(cassette)
    _check_cassette_name(cassette)
    lines = read_batch_output(outputs)
    pairs, imported, already, errors, unknown = [], [], [], [], []
    for line in lines:
        cid = line["custom_id"]
        if cid in recorded or cid in imported:
            already.append(cid)
            continue
        if cid not in pending:
            unknown.append(cid)
            continue
        kept, why = _response(line)
        if kept is None:
            errors.append((cid, why))
            continue
        req = pending[cid]
        pairs.append((_request(_url(req.endpoint), req.body, base_url), kept))
        imported.append(cid)
    if pairs:
        _append(cassette, pairs)
    answered = {line["custom_id"] for line in lines}
    missing = tuple(cid for cid in pending if cid not in answered)
    failed = {cid for cid, _ in errors} - set(imported)
    errors_left = tuple((cid, why) for cid, why in errors if cid in failed)
    return ImportReport(cassette, tuple(imported), tuple(dict.fromkeys(already)), errors_left, missing, tuple(unknown))


def run_batch_locally(
    inputs: Sequence[str | Path], output: str | Path, base_url: str, *, timeout_s: float = 600.0
) -> dict[str, int]:
    """Answer Batch API input files from an OpenAI-compatible server (llama.cpp, vLLM), one request at a
    time, writing its real replies to ``output`` in the Batch API's output shape (``BatchRequestOutput``).

    For users without the Batch API, and for tests of the round trip on real replies. ``id`` and
    ``request_id`` are ``local-N``: no such ids exist outside the Batch API. A connection failure becomes
    an ``error`` line. Returns counts: ``ok`` (status 200) and ``failed``."""
    root = base_url.rstrip("/")
    session = http.Session()
    out, counts = [], {"ok": 0, "failed": 0}
    for i, line in enumerate(_read_jsonl(inputs)):
        path = line["url"].removeprefix("/v1")
        entry: dict[str, Any] = {"id": f"local-{i}", "custom_id": line["custom_id"], "response": None, "error": None}
        try:
            r = session.post(
                root + path,
                data=encode_body(line["body"]),
                headers={"Content-Type": "application/json"},
                timeout=timeout_s,
            )
        except http.RequestException as exc:
            entry["error"] = {"code": "connection_error", "message": type(exc).__name__}
        else:
            try:
                body = r.json()
            except ValueError:
                body = {"error": {"message": r.text[:200]}}
            entry["response"] = {"status_code": r.status_code, "request_id": f"local-{i}", "body": body}
        counts["ok" if entry["response"] and entry["response"]["status_code"] == 200 else "failed"] += 1
        out.append(entry)
    text = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in out)
    write_atomic(output, text.encode("utf-8"))
    return counts


def requests_from_cassette(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """The ``(endpoint, payload)`` pairs recorded in a cassette, in order (to re-send a run as a batch)."""
    requests, _ = GzipJsonPersister.load_cassette(path, _JsonSerializer)[:2]
    out = []
    for r in requests:
        endpoint = urlsplit(r.uri).path.split("/v1/", 1)[-1]
        out.append((endpoint, json.loads(r.body)))
    return out
