"""The recommended path (docs/reference.md, "Best of N, fairly"), replayed offline from the committed
example cassettes (recorded live from the local llama-server with the commands below): best of N through
`vse explain` and `vse validate`."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from vse.cli import validate as validate_command
from vse.cli.main import main
from vse.llm.client import Completion, Usage
from vse.method.llm import LLM
from vse.method.simulators.embedding import EmbeddingStore

from ..llm.fakes import ScriptedClient

EXAMPLES = Path(__file__).resolve().parents[2] / "cassettes" / "examples"


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_explain_n3_chooses_on_held_in_items_and_reports_held_out(tmp_path):
    for name in ("explain-n3.json.gz", "explain-n3.embeddings.npz"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    r = _run(
        "explain", "efficientnet_lite0/_conv_head/5", "--method", "weight-label", "--n", "3",
        "--cassette", str(tmp_path / "explain-n3.json.gz"), "--replay",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "held-in scores (487 items, split seed 0):" in lines
    held_in = [line for line in lines if line.startswith("     ")]
    assert len(held_in) == 3 and held_in[1].endswith("<- chosen")
    assert "best of 3 on the 488 held-out items: 1.94 ± 0.00 (1)" in r.output


def test_validate_n4_with_the_recommended_scorer(tmp_path):
    cassettes = tmp_path / "validate"
    shutil.copytree(EXAMPLES / "validate", cassettes)
    r = _run(
        "validate", "efficientnet_lite0/_conv_head", "--units", "1,2,3,4", "--methods", "weight-label",
        "--targets", "weight-label", "--n", "4", "--simulator", "embedding", "--protocol", "recall-free",
        "--cassettes", str(cassettes), "--replay",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    row = "| recall-free | weight-label | weight-label (best of 4) | 4 | 3.9 | -0.0 | 4/4 | 3 | 1.25 | 0.0155 |"
    assert row in r.output
    # NeuronEval's Meta-AUPRC beside the paired p: all 16 pairs (floor 1/4) and own vs nearest explanation (floor 0.5).
    assert "| weight-label (best of 4), weight-label, recall-free | 4 | 0.579 | 0.250 | 0.950 | 0.50 |" in r.output


def test_example_cassettes_hold_each_request_once():
    for path in sorted(EXAMPLES.rglob("*.json.gz")):
        requests = json.loads(gzip.decompress(path.read_bytes()))["interactions"]
        keys = [json.dumps(i["request"], sort_keys=True) for i in requests]
        assert len(set(keys)) == len(keys), f"{path}: {len(keys) - len(set(keys))} request(s) held twice"


def test_validate_on_two_targets_sends_each_explanation_request_once(tmp_path, monkeypatch):
    # The command's own path (options to one library call) with the LLM replaced by a scripted one that keeps
    # every request: 3 units x 4 candidates, explained once and scored on both targets.
    def explainer(prompt, fields):
        return Completion(f" things like {prompt.rsplit('<end>', 1)[0][-60:]}.", [], Usage(100, 20), "stop")

    client = ScriptedClient(explainer)
    monkeypatch.setattr(validate_command, "open_llm", lambda *_a: contextlib.nullcontext(LLM(client)))
    letters = functools.partial(
        EmbeddingStore, encode=lambda ts: np.array([[t.count(c) + 0.1 for c in "aeiost"] for t in ts], np.float32)
    )
    monkeypatch.setattr(validate_command, "EmbeddingStore", letters)
    r = _run(
        "validate", "efficientnet_lite0/_conv_head", "--units", "1,2,3", "--methods", "weight-label",
        "--targets", "weight-label,caption-activation", "--n", "4", "--simulator", "embedding",
        "--protocol", "recall-free", "--cassettes", str(tmp_path / "validate"),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    sent = [json.dumps([prompt, fields], sort_keys=True) for _, prompt, fields in client.requests]
    assert len(sent) == 3 * 4 and len(set(sent)) == len(sent)
    assert "| recall-free | weight-label | weight-label (best of 4) | 3 |" in r.output
    assert "| recall-free | caption-activation | weight-label (best of 4) | 3 |" in r.output
