"""The committed cassettes are complete and hold no secret; a request they lack names its cassette.

That a replay gives the committed bytes is tested in test_reproduce_anywhere.py, under several
numerical environments at once."""

import gzip
import re
from dataclasses import replace
from pathlib import Path

import pytest

from vse.llm.cassettes import CassetteMiss
from vse.studies.registry import EXPERIMENTS
from vse.studies.runner import Paths, run_experiment
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
