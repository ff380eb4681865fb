"""A damaged cassette gives one error, `CassetteError`, naming the file: never a zlib, gzip,
EOF or JSON error that says nothing of which file (or click's bare "Aborted!" for an EOFError).

The small cassette is cut from the real recorded one (its first interactions, re-gzip'd), so the
bytes are a real recording's, small enough to try every truncation.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vse.llm.cassettes import GzipJsonPersister, _JsonSerializer, gzip_bytes, use_cassette
from vse.llm.errors import CassetteError, LLMError

REAL = sorted((Path(__file__).parents[2] / "cassettes").rglob("*.json.gz"))[0]


@pytest.fixture(scope="module")
def small_real() -> bytes:
    data = json.loads(gzip.decompress(REAL.read_bytes()))
    data["interactions"] = data["interactions"][:2]
    return gzip_bytes(_JsonSerializer.serialize(data).encode())


def load(path: Path):
    return GzipJsonPersister.load_cassette(path, _JsonSerializer)


def assert_only_cassette_error(path: Path, allow_ok: bool = False) -> None:
    try:
        load(path)
    except CassetteError as exc:
        assert str(path) in str(exc)
        assert isinstance(exc, LLMError)
    except FileNotFoundError:
        # vcrpy's "no cassette" (an empty file): replay then names the file in a CassetteMiss.
        assert path.stat().st_size == 0 or gzip.decompress(path.read_bytes()).strip() == b""
    else:
        assert allow_ok, f"{path} loaded although damaged"


def test_the_small_cassette_loads(tmp_path, small_real):
    path = tmp_path / "c.json.gz"
    path.write_bytes(small_real)
    requests, responses = load(path)
    assert len(requests) == len(responses) == 2


def test_every_truncation_gives_a_cassette_error_naming_the_file(tmp_path, small_real):
    path = tmp_path / "cut.json.gz"
    for n in range(1, len(small_real)):
        path.write_bytes(small_real[:n])
        with pytest.raises(CassetteError) as info:
            load(path)
        assert str(path) in str(info.value), n


@settings(max_examples=200)
@given(st.data())
def test_a_flipped_byte_gives_a_cassette_error_or_loads(tmp_path_factory, small_real, data):
    # Some header bytes (mtime, OS) carry no meaning, so a flip there still loads.
    i = data.draw(st.integers(0, len(small_real) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(small_real)
    damaged[i] ^= 1 << bit
    path = tmp_path_factory.mktemp("flip") / "f.json.gz"
    path.write_bytes(bytes(damaged))
    assert_only_cassette_error(path, allow_ok=i in range(4, 10))


@settings(max_examples=300)
@given(
    st.binary(min_size=1, max_size=2000)
    | st.builds(lambda b: gzip_bytes(b), st.binary(max_size=500))
    | st.builds(lambda t: gzip_bytes(t.encode()), st.text(max_size=200))
    | st.builds(
        lambda v: gzip_bytes(json.dumps(v).encode()),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=5),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["interactions", "request", "response", "version", "body"]), c, max_size=3
                )
            ),
        ),
    )
)
def test_arbitrary_bytes_give_only_a_cassette_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("any") / "x.json.gz"
    path.write_bytes(blob)
    assert_only_cassette_error(path, allow_ok=True)


def test_replaying_a_cut_cassette_raises_the_cassette_error(tmp_path, small_real):
    path = tmp_path / "cut.json.gz"
    path.write_bytes(small_real[: len(small_real) // 2])
    with pytest.raises(CassetteError, match="cut short") as info:
        with use_cassette(path):
            pass
    assert str(path) in str(info.value)


def test_saving_keeps_mode_0644(tmp_path, small_real):
    path = tmp_path / "c.json.gz"
    path.write_bytes(small_real)
    os.chmod(path, 0o644)
    requests, responses = load(path)
    GzipJsonPersister.save_cassette(path, {"requests": requests, "responses": responses}, _JsonSerializer)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert path.read_bytes() == small_real  # and a round trip gives the same bytes
