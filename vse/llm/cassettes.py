"""Recorded LLM traffic (vcrpy cassettes): replay by default, record on request, no secrets kept.

Policy
------
- **Replay-only by default** (vcrpy record mode ``none``): a request the cassette does not hold
  raises `CassetteMiss`, naming the cassette file and the request. No server and no key needed.
- **Recording is resumable** (``record=True`` -> record mode ``new_episodes``): requests already
  in the cassette replay, new ones go to the server and are appended when the block exits
  (also when it exits with an exception, so an interrupted recording keeps what it got).
- **Matching** is on method, path, query and the exact body bytes, not on scheme/host/port:
  the local server's port may differ between recording and replay, and a replay must not
  need a server at all. The client writes bodies deterministically (sorted keys, fixed
  separators), so the same call gives the same bytes.
- **Each request once**: a request the cassette already holds is answered from it, in a recording
  as in a replay, so a cassette never holds the same request twice and a recording never sends a
  held request to the server again (`_answer_once`). While recording, a repeat plays the reply
  recorded first (what its replay will return); a second identical request that was already in
  flight when the first was stored is not stored again. Cassettes recorded before this held some
  identical requests more than once: those copies still play back in the order they were recorded,
  and a request sent more often than it was recorded plays its last copy again. vse's requests differ
  wherever a different reply is wanted (each repeated sample has its own ``seed``), and a failed
  reply is never stored (`is_good_reply`), so its retry reaches the server.
- **Threads**: requests may be in flight from several threads at once (one-item predictions,
  `vse.method.simulators.one_item.OneItemSimulator.predict`); the cassette's bookkeeping runs under one lock
  (`_serialize_access`). Recorded interactions then lie in the order the replies came back,
  which a replay does not depend on: each is found by its request bytes, whatever the order
  or the number in flight. The predictions never send two identical requests at once.
- **Scrubbing** on the way in: request headers are cut down to ``Content-Type`` (so
  ``Authorization``, ``api-key``, ``OpenAI-Organization``, ``Cookie`` and version-bearing
  ``User-Agent`` never reach the file), and response headers to ``Content-Type`` (no
  ``Set-Cookie``, org or request ids, dates). A loopback URL is stored without its port.
  Compressed responses are stored decoded.
- **Format**: vcrpy's JSON cassette layout (``{"version": 1, "interactions": [...]}``), written
  with sorted keys, then gzip-compressed with a zero mtime and no file name in the header;
  suffix ``.json.gz``. Re-recording identical traffic gives identical bytes. Replies with
  logprobs are large, but few-shot prompts repeat across requests, so gzip removes most of it.
  Read one with ``zcat FILE.json.gz | less``.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
import os
import threading
import types
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

import requests
import vcr
import vcr.patch
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from vcr.errors import CannotOverwriteExistingCassetteException, UnhandledHTTPRequestError
from vcr.filters import decode_response
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.record_mode import RecordMode
from vcr.request import Request
from vcr.serialize import deserialize, serialize

from vse.atomic import write_atomic
from vse.llm.errors import CassetteError, CassetteMiss
from vse.llm.slots import UNRECORDED

__all__ = [
    "CASSETTE_SUFFIX",
    "CassetteError",
    "CassetteMiss",
    "GzipJsonPersister",
    "ReplaySession",
    "cassette_sizes",
    "scrub_request",
    "scrub_response",
    "translate_vcr_error",
    "use_cassette",
]

CASSETTE_SUFFIX = ".json.gz"
#: Headers kept in a cassette (lower case); everything else is dropped before it is stored.
KEEP_REQUEST_HEADERS = frozenset({"content-type"})
KEEP_RESPONSE_HEADERS = frozenset({"content-type"})
#: Headers that carry secrets; never stored whatever the allow-lists above say.
SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "openai-organization", "openai-project", "cookie", "set-cookie"}
)
MATCH_ON = ("method", "path", "query", "raw_body")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


# -- scrubbing ------------------------------------------------------------------------------------


def scrub_request(request: Any) -> Any:
    """vcrpy ``before_record_request``: a copy with only the kept headers and a port-free loopback URI;
    None (vcrpy then neither stores nor matches it: it goes to the server) for an `UNRECORDED` request.

    It copies because vcrpy also calls it on the live request (to match it): the real
    request must still carry its Authorization header to the server. A new Request with its own
    header dict is enough (the body is immutable bytes); a deepcopy per call was a third of a replay's time.
    """
    if any(name.lower() == UNRECORDED.lower() for name in request.headers):
        return None  # slot warm-up (vse.llm.slots): not part of any result, never stored, never replayed
    request = Request(request.method, request.uri, request.body, dict(request.headers))
    for name in list(request.headers):
        if name.lower() not in KEEP_REQUEST_HEADERS or name.lower() in SECRET_HEADERS:
            del request.headers[name]
    parts = urlsplit(request.uri)
    if (parts.hostname or "") in _LOOPBACK:
        request.uri = urlunsplit((parts.scheme, "localhost", parts.path, parts.query, parts.fragment))
    return request


def is_good_reply(response: dict[str, Any]) -> bool:
    """Whether a reply may be stored: a 2xx whose body is JSON, and for a completion a non-empty ``choices``.

    A failed reply (a 500, a 200 with HTML or with an empty ``choices``) must never reach a
    cassette: it would replay forever, and the retry that follows must reach the server.
    """
    status = (response.get("status") or {}).get("code", 0)
    if not 200 <= int(status) < 300:
        return False
    raw = (response.get("body") or {}).get("string", b"")
    try:
        body = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(body, dict):
        return False
    if "choices" in body or "object" in body and str(body.get("object", "")).endswith("completion"):
        choices = body.get("choices")
        return isinstance(choices, list) and bool(choices) and isinstance(choices[0], dict)
    return True


def scrub_response(response: dict[str, Any]) -> dict[str, Any] | None:
    """vcrpy ``before_record_response``: a copy with only the kept headers (no cookies, ids, dates).

    Returns None (vcrpy then stores nothing) for a reply that `is_good_reply` rejects.
    """
    if not is_good_reply(response):
        return None
    response = copy.deepcopy(response)
    headers = response.get("headers") or {}
    response["headers"] = {
        name: value
        for name, value in headers.items()
        if name.lower() in KEEP_RESPONSE_HEADERS and name.lower() not in SECRET_HEADERS
    }
    return response


# -- gzip JSON persistence ------------------------------------------------------------------------


class _JsonSerializer:
    """vcrpy serializer: JSON with sorted keys, one-space indent (readable after ``zcat``)."""

    @staticmethod
    def serialize(data: dict[str, Any]) -> str:
        try:
            return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        except TypeError as exc:  # bytes that are not UTF-8 (never produced by our client)
            raise TypeError(f"cassette holds non-text data: {exc}") from exc

    @staticmethod
    def deserialize(text: str) -> dict[str, Any]:
        return json.loads(text)


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip: no mtime, no file name, fixed level."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


class GzipJsonPersister:
    """vcrpy persister: cassettes as gzip-compressed JSON, written atomically."""

    @classmethod
    def load_cassette(cls, cassette_path: str | os.PathLike, serializer: Any) -> Any:
        path = Path(cassette_path)
        if not path.is_file():
            raise CassetteNotFoundError()
        # Every way a file can be damaged ends in one error that names it: a cut gzip is an
        # EOFError (which click would turn into a bare "Aborted!"), a flipped byte a zlib error
        # or a CRC mismatch, none of which say which file.
        try:
            with gzip.open(path, "rb") as f:
                raw = f.read()
        except EOFError:
            raise CassetteError(str(path), "the gzip stream is cut short") from None
        except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise CassetteError(str(path), f"damaged gzip: {exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CassetteError(str(path), f"not UTF-8 text at byte {exc.start}") from None
        if not text.strip():
            raise CassetteNotFoundError()
        try:
            data = serializer.deserialize(text)
        except ValueError as exc:  # json.JSONDecodeError
            raise CassetteError(str(path), f"not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
            raise CassetteError(str(path), "not a cassette: no 'interactions' list")
        parsed = types.SimpleNamespace(deserialize=lambda _text: data)  # parse the JSON once, not twice
        try:
            return deserialize(text, parsed)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise CassetteError(str(path), f"malformed interaction: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def save_cassette(cassette_path: str | os.PathLike, cassette_dict: dict[str, Any], serializer: Any) -> None:
        # Atomic (temporary file, fsync, rename) and mode 0644 like a committed file: mkstemp's
        # 0600 would otherwise show up as a mode change in git after every recording.
        write_atomic(cassette_path, gzip_bytes(serialize(cassette_dict, serializer).encode("utf-8")))


# -- replay misses --------------------------------------------------------------------------------

_REASONS = {
    "cassette_not_found": "The cassette file does not exist (or is empty).",
    "already_played": "An identical request was recorded, but fewer times than it is sent now.",  # vcrpy's own
    "no_match": "No recorded request has this body (or path).",
    "nothing_similar": "The cassette has nothing similar.",
}


def _text(body: Any) -> str:
    if body is None:
        return ""
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, (bytes, bytearray)):
        return bytes(body).decode("utf-8", errors="replace")
    return str(body)


def translate_vcr_error(exc: BaseException) -> CassetteMiss | None:
    """vcrpy's `CannotOverwriteExistingCassetteException` as a `CassetteMiss`; None for anything else."""
    if isinstance(exc, CassetteMiss):
        return exc
    if not isinstance(exc, CannotOverwriteExistingCassetteException):
        return None
    cassette = getattr(getattr(exc, "cassette", None), "_path", "?")
    request = getattr(exc, "failed_request", None)
    if request is None:
        return CassetteMiss(str(cassette), "?", "?", "", detail=str(exc).splitlines()[0])
    return CassetteMiss(
        str(cassette),
        request.method,
        request.path,
        _text(request.body),
        detail=_REASONS.get(getattr(exc, "reason", ""), ""),
    )


# -- the context manager --------------------------------------------------------------------------


def _vcr() -> vcr.VCR:
    config = vcr.VCR(
        serializer="vse-json",
        match_on=MATCH_ON,
        before_record_request=scrub_request,
        before_record_response=scrub_response,
        decode_compressed_response=True,
        record_on_exception=True,
    )
    config.register_serializer("vse-json", _JsonSerializer)
    config.register_persister(GzipJsonPersister)
    # vcrpy wraps each filter chain in deep copies (the request once more before `scrub_request`, the
    # response in `decode_response` before `scrub_response`), and runs them on every interaction it
    # loads: 4 deep copies of each of a cassette's thousands of replies, about a third of a replay's
    # loading time. Both filters copy what they change already, so the chains are these two functions.
    config._build_before_record_request = lambda _options: scrub_request
    config._build_before_record_response = lambda _options: _decode_and_scrub
    return config


def _decode_and_scrub(response: dict[str, Any]) -> dict[str, Any] | None:
    """vcrpy's response chain (`decode_response`, then `scrub_response`) without its extra deep copy."""
    headers = response.get("headers") or {}
    if any(name.lower() == "content-encoding" for name in headers):
        response = decode_response(response)  # a compressed live reply: stored decoded
    return scrub_response(response)


def _match_key(request: Any) -> tuple:
    """The fields `MATCH_ON` compares, as one hashable key (same equality as vcrpy's matchers)."""
    body = request.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    return (request.method, request.path, tuple(request.query), body)


def _index_matching(cassette: Any) -> None:
    """Give a vcrpy cassette a hash index for request matching.

    vcrpy compares a request with every stored one, twice per request: replaying n recorded
    calls costs O(n^2) matcher calls (about 5 minutes for 3,000 calls here). The index yields the
    same matches, in the same order, by looking the key up; entries appended while recording
    are indexed as they come.
    """
    index: dict[tuple, list[int]] = {}
    seen = 0
    # vcrpy asks up to four times about the same request object (can play? play, ...); each
    # ask ran the scrubbing filters (a deep copy) again. Each thread's last request's key is kept
    # (per thread: requests in flight on other threads must not swap keys with this one).
    last = threading.local()
    lock = _lock_of(cassette)

    def _responses(request: Any):
        nonlocal seen
        if getattr(last, "request", None) is not request:
            scrubbed = cassette._before_record_request(request)
            last.request, last.key = request, (_match_key(scrubbed) if scrubbed else None)
        key = last.key
        if key is None:
            return
        with lock:
            while seen < len(cassette.data):
                index.setdefault(_match_key(cassette.data[seen][0]), []).append(seen)
                seen += 1
            hits = [(i, cassette.data[i][1]) for i in index.get(key, ())]
        yield from hits

    cassette._responses = _responses


def _answer_once(cassette: Any) -> None:
    """Make a vcrpy cassette answer every request it holds from itself, and store each request once.

    vcrpy plays a held interaction only when it was loaded from the file (not when recorded in this
    session) and only once, and a request it cannot play goes to the server and is appended again: a run
    that sent a request twice recorded it twice. Here a held request plays its first unplayed copy, else
    its last one again (copies exist only in cassettes recorded before), in a recording as in a replay;
    `append` skips a request the cassette already holds. `_serialize_access` then puts all three under the
    cassette's lock; `_index_matching` makes the look-up a hash.
    """
    append = cassette.append

    def can_play_response_for(request: Any) -> bool:
        return cassette.record_mode != RecordMode.ALL and any(True for _ in cassette._responses(request))

    def play_response(request: Any) -> Any:
        held = list(cassette._responses(request))
        if not held:
            raise UnhandledHTTPRequestError(f"the cassette ({cassette._path!r}) does not hold {request!r}")
        index, response = next(((i, r) for i, r in held if cassette.play_counts[i] == 0), held[-1])
        cassette.play_counts[index] += 1
        return response

    def append_once(request: Any, response: Any) -> None:
        if not any(True for _ in cassette._responses(request)):
            append(request, response)

    cassette.can_play_response_for = can_play_response_for
    cassette.play_response = play_response
    cassette.append = append_once


def _lock_of(cassette: Any) -> threading.RLock:
    """The cassette's lock (made on first use)."""
    lock = cassette.__dict__.get("_vse_lock")
    if lock is None:
        lock = cassette.__dict__.setdefault("_vse_lock", threading.RLock())
    return lock


def _serialize_access(cassette: Any) -> None:
    """Make a vcrpy cassette safe to use from several threads at once (predictions in flight).

    vcrpy's cassette is plain lists and counters: two threads appending, or one appending while
    another saves (a checkpoint) or looks a request up, could lose or garble interactions. Every
    method that reads or writes them runs under one lock; the HTTP call itself does not, so
    requests still overlap. Each interaction is matched by its request bytes (`MATCH_ON`), so
    the order in which concurrent requests were recorded does not change what a replay returns.
    """
    lock = _lock_of(cassette)
    for name in ("can_play_response_for", "play_response", "append", "responses_of", "_save"):
        method = getattr(cassette, name)

        def locked(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with lock:
                return _method(*args, **kwargs)

        setattr(cassette, name, locked)


@contextlib.contextmanager
def _no_reset() -> Iterator[None]:
    """Stands in for vcrpy's `force_reset` while a cassette is in use.

    vcrpy makes each connection's real twin, and sends a request it must record through it,
    inside `force_reset`, which puts the real connection classes back *process-wide* meanwhile.
    A connection that another thread opens in that moment is then a real one and bypasses the
    cassette: with 4 one-item predictions in flight, 4 of 16 replies were never recorded, and a
    replay reached for the network. The real urllib3 connection behind `requests` is made and
    sends its request without any of the patched classes, so nothing needs to be put back.
    """
    yield


@contextlib.contextmanager
def use_cassette(path: Path | str, *, record: bool = False) -> Iterator[Any]:
    """Route every `requests` call in the block through the cassette at ``path`` (``*.json.gz``).

    Replay-only unless ``record=True`` (then resumable: new requests are appended). Yields the
    vcrpy cassette (``len(c)``, ``c.play_count``, ``c.all_played``). A request missing from
    the cassette raises `CassetteMiss`, whether the client or other code made it.
    """
    path = Path(path)
    if not path.name.endswith(CASSETTE_SUFFIX):
        raise ValueError(f"cassette file names end in {CASSETTE_SUFFIX!r}: {path}")
    mode = "new_episodes" if record else "none"
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(vcr.patch, "force_reset", _no_reset))
        cassette = stack.enter_context(_vcr().use_cassette(str(path), record_mode=mode, allow_playback_repeats=False))
        _answer_once(cassette)
        _serialize_access(cassette)
        if tuple(cassette._match_on) == tuple(getattr(vcr.matchers, m) for m in MATCH_ON):
            _index_matching(cassette)
        try:
            yield cassette
        except CannotOverwriteExistingCassetteException as exc:
            raise translate_vcr_error(exc) from exc


class ReplaySession:
    """What a replaying `LLMClient` sends its requests to in place of a `requests.Session`.

    vcrpy answers a replay from inside `requests` and urllib3 (a patched connection): preparing each
    request, parsing the recorded headers with the e-mail parser, building urllib3's reply, half of
    `vse reproduce`'s time for its 30,000 recorded calls. This looks the request up in the same cassette
    by the same rules (`MATCH_ON`, play counts: its own `can_play_response_for` and `play_response`)
    and turns the recorded reply into a `requests.Response` at once. A request the cassette lacks raises
    vcrpy's own `CannotOverwriteExistingCassetteException`, as the patched connection does, so the
    client reports the miss the same way (`translate_vcr_error`). Nothing is ever sent.
    """

    trust_env = False  # what `requests.Session` has; nothing here reads the environment

    def __init__(self, cassette: Any) -> None:
        self.cassette = cassette

    def post(self, url: str, data: bytes | None = None, headers: dict[str, str] | None = None, **_: Any) -> Any:
        return self.request("POST", url, data, headers)

    def get(self, url: str, headers: dict[str, str] | None = None, **_: Any) -> Any:
        return self.request("GET", url, None, headers)

    def request(self, method: str, url: str, body: bytes | None, headers: dict[str, str] | None) -> Any:
        request = Request(method, url, body, dict(headers or {}))
        if not self.cassette.can_play_response_for(request):
            raise CannotOverwriteExistingCassetteException(cassette=self.cassette, failed_request=request)
        return _as_response(self.cassette.play_response(request), url)


def _as_response(recorded: dict[str, Any], url: str) -> Any:
    """A recorded reply as the `requests.Response` that `requests` builds from it (status, headers, body)."""
    response = requests.Response()
    response.status_code = int(recorded["status"]["code"])
    response.reason = recorded["status"].get("message")
    response.headers = CaseInsensitiveDict(
        {
            name: ", ".join(values) if isinstance(values, list) else values
            for name, values in recorded["headers"].items()
        }
    )
    response.encoding = get_encoding_from_headers(response.headers)
    body = recorded["body"]["string"]
    response._content = body.encode("utf-8") if isinstance(body, str) else body
    response.url = url
    return response


def cassette_sizes(root: Path | str) -> dict[Path, int]:
    """Bytes on disk of every cassette under ``root``, by path (sorted), for a size budget."""
    return {p: p.stat().st_size for p in sorted(Path(root).rglob("*" + CASSETTE_SUFFIX)) if p.is_file()}


def save_now(cassette: Any) -> None:
    """Write a recording cassette to disk now (vcrpy saves only when the block exits).

    The one place outside `_index_matching` and `_serialize_access` that touches vcrpy internals
    (`Cassette._save`, under the cassette's lock: requests in flight may be appending);
    vcrpy is pinned in pyproject.toml for that reason.
    """
    cassette._save()
