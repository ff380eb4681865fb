"""The committed cassettes are complete and hold no secret; a request they lack names its cassette.

That a replay gives the committed bytes is tested in test_reproduce_anywhere.py, under several
numerical environments at once."""

import gzip
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from vse.llm.cassettes import CassetteMiss
from vse.studies.registry import EXPERIMENTS
from vse.studies.runner import MAX_REPLAY_WORKERS, Paths, replay_workers, reproduce, run_experiment
from vse.studies.table import TableExperiment

REPO = Path(__file__).resolve().parents[2]
CASSETTES = REPO / "cassettes"


def test_every_experiment_is_recorded():
    missing = [name for name in EXPERIMENTS if not (CASSETTES / name).is_dir()]
    assert not missing, f"no cassettes for {missing}: record them with `make record`"


def test_a_request_missing_from_the_cassette_names_the_cassette(tmp_path):
    name = next(n for n, e in EXPERIMENTS.items() if isinstance(e, TableExperiment) and (CASSETTES / n).is_dir())
    exp = EXPERIMENTS[name]
    # A variant whose explanation seeds were never recorded, on the same cassettes.
    variant = replace(exp, seed=12345)
    with pytest.raises(CassetteMiss, match=re.escape(name)):
        run_experiment(variant, paths=Paths(CASSETTES, tmp_path / "r"), progress=False)


SECRET = re.compile(rb"(?i)authorization|bearer|sk-[a-z0-9]{8}|set-cookie|openai-organization|api[-_]key")
LOCAL_PATH = re.compile(rb"/(root|home|Users|tmp)/")


def test_cassettes_hold_no_secret_nor_local_path_and_fit_the_budget():
    files = sorted(CASSETTES.rglob("*.json.gz"))
    assert files, "no cassettes committed"
    total = 0
    for f in files:
        data = gzip.decompress(f.read_bytes())
        assert not SECRET.search(data), f"{f} holds a header or key that should have been scrubbed"
        assert not LOCAL_PATH.search(data), f"{f} holds a local path"
        total += f.stat().st_size
    assert total < 40 * 2**20


SMALL = ("chat-vs-completions", "fewshot-per-pass", "negative-one-neuron")  # quick replays


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_replay_side_by_side_writes_the_bytes_of_one_after_the_other(tmp_path):
    one = list(reproduce(SMALL, paths=Paths(CASSETTES, tmp_path / "one"), progress=False, workers=1))
    two = list(reproduce(SMALL, paths=Paths(CASSETTES, tmp_path / "two"), progress=False, workers=2))
    assert [name for name, _ in two] == list(SMALL) and two == one  # tables in the order asked for
    assert _tree(tmp_path / "two") == _tree(tmp_path / "one") and len(_tree(tmp_path / "one")) > len(SMALL)


def test_a_failure_in_a_replay_process_is_raised_as_in_one_process(tmp_path):
    cassettes = tmp_path / "cassettes"
    for name in SMALL[:2]:
        shutil.copytree(CASSETTES / name, cassettes / name)
    (cassettes / SMALL[2]).mkdir()  # its cassettes are missing
    with pytest.raises(FileNotFoundError, match=re.escape(str(cassettes / SMALL[2]))):
        list(reproduce(SMALL, paths=Paths(cassettes, tmp_path / "r"), progress=False, workers=2))
    assert {p.name for p in (tmp_path / "r").iterdir()} >= set(SMALL[:2])


def test_replay_workers_are_bounded():
    assert replay_workers(1) == 1
    assert 1 <= replay_workers(100) <= MAX_REPLAY_WORKERS
