"""The committed cassettes replay offline into the same bytes, and hold no secret."""

import gzip
import re
from pathlib import Path

import pytest

from vse.experiments import EXPERIMENTS, evaluation_units
from vse.llm.cassettes import CassetteMiss
from vse.run import Paths, cassette_path, run_experiment

REPO = Path(__file__).resolve().parents[1]
CASSETTES = REPO / "cassettes"


def _results(tmp: Path) -> dict[str, bytes]:
    return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in sorted(tmp.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_replay_is_offline_and_byte_identical(name, tmp_path):
    exp = EXPERIMENTS[name]
    a, b = tmp_path / "a", tmp_path / "b"
    _, table_a = run_experiment(exp, paths=Paths(CASSETTES, a), progress=False)
    _, table_b = run_experiment(exp, paths=Paths(CASSETTES, b), progress=False)
    assert table_a == table_b
    assert _results(a) == _results(b)
    committed = REPO / "results" / name
    for rel, data in _results(a).items():
        assert (REPO / "results" / rel).read_bytes() == data, f"results/{rel} differs from a replay: run `make reproduce` and commit"
    assert committed.exists()


def test_a_request_missing_from_the_cassette_names_the_cassette(tmp_path):
    exp = EXPERIMENTS["weight-label-one-neuron"]
    unit = evaluation_units(exp)[0]
    src = cassette_path(Paths(CASSETTES, tmp_path), exp, unit)
    # An experiment variant whose first request is not recorded (another explanation seed).
    from dataclasses import replace

    variant = replace(exp, seed=12345)
    dst = cassette_path(Paths(tmp_path / "c", tmp_path / "r"), variant, unit)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    with pytest.raises(CassetteMiss, match=re.escape(dst.name)):
        run_experiment(variant, paths=Paths(tmp_path / "c", tmp_path / "r"), progress=False)


SECRET = re.compile(rb"(?i)authorization|bearer|sk-[a-z0-9]{8}|set-cookie|openai-organization|api[-_]key")


def test_cassettes_hold_no_secret_and_fit_the_budget():
    files = sorted(CASSETTES.rglob("*.json.gz"))
    assert files, "no cassettes committed"
    total = 0
    for f in files:
        data = gzip.decompress(f.read_bytes())
        assert not SECRET.search(data), f"{f} holds a header or key that should have been scrubbed"
        total += f.stat().st_size
    assert total < 40 * 2**20
