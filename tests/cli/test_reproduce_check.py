"""`vse reproduce --check`: a scratch replay compared number by number, results/ left untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from vse.cli.main import main

REPO = Path(__file__).resolve().parents[2]
NAME = "negative-one-neuron"


def _check(against: Path | None = None, *extra: str):
    args = ["reproduce", "--check", "--experiment", NAME, *extra]
    if against is not None:
        args += ["--against", str(against)]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _edit_first_record(folder: Path, edit) -> None:
    path = folder / NAME / "results.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    edit(record)
    lines[0] = json.dumps(record, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")


def test_the_committed_results_check_identical(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    before = (REPO / "results" / NAME / "results.jsonl").read_bytes()
    res = _check()
    assert res.exit_code == 0, res.output
    assert res.output.startswith("identical: ")
    assert (REPO / "results" / NAME / "results.jsonl").read_bytes() == before


def test_last_bit_noise_passes_and_a_changed_score_fails_naming_the_field(tmp_path):
    against = tmp_path / "results"
    shutil.copytree(REPO / "results" / NAME, against / NAME)

    _edit_first_record(against, lambda r: r.update(mean=r["mean"] * (1 + 4e-16)))
    res = _check(against)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("within tolerance: ") and "1 numbers differ within relative tolerance" in res.output

    _edit_first_record(against, lambda r: r.update(mean=r["mean"] + 0.5))
    res = _check(against)
    assert res.exit_code == 1
    assert f"{NAME}/results.jsonl: record 1.mean: expected" in res.output


def test_check_refuses_record_and_a_missing_folder(tmp_path):
    res = CliRunner().invoke(main, ["reproduce", "--check", "--record"])
    assert res.exit_code == 2 and "--check replays only" in res.output
    res = _check(tmp_path / "nowhere")
    assert res.exit_code == 2 and "no results folder" in res.output
