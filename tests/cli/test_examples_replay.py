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
from vse.llm.client import Completion, LLMClient, Usage
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


# `vse validate` on two targets (docs/reference.md): units 8-11, used by no study, recorded from the local llama-server
# by this command without --replay (--cassettes cassettes/examples/validate-two-targets), the default embedding scorer.
TWO_TARGETS = [
    "validate", "efficientnet_lite0/_conv_head", "--units", "8,9,10,11", "--methods", "weight-label",
    "--targets", "weight-label,caption-activation", "--n", "4",
]  # fmt: skip
#: The lines the recording printed (paired p and Meta-AUPRC per target), copied from its output.
TWO_TARGETS_LINES = [
    "| recall-free | weight-label | weight-label (best of 4) | 4 | 8.6 | 0.1 | 4/4 | 3 | 1.25 | 0.0319 | 0.0625 "
    "| 6 | - | - |",
    "| recall-free | caption-activation | weight-label (best of 4) | 4 | 7.0 | 2.1 | 3/4 | 1 | 2.00 | 0.1670 "
    "| 0.3125 | 20 | - | - |",
    "| weight-label (best of 4), weight-label, recall-free | 4 | 0.830 | 0.250 | 0.950 | 0.50 |",
    "| weight-label (best of 4), caption-activation, recall-free | 4 | 0.437 | 0.250 | 0.542 | 0.50 |",
]


def test_validate_on_two_targets_replays_the_recorded_example_each_explanation_once(tmp_path, monkeypatch):
    folder = EXAMPLES / "validate-two-targets"
    cassettes = tmp_path / "validate-two-targets"
    shutil.copytree(folder, cassettes)
    recorded = json.loads(gzip.decompress((folder / "efficientnet_lite0___conv_head__fair.json.gz").read_bytes()))
    posts = [i["request"]["body"] for i in recorded["interactions"] if i["request"]["method"] == "POST"]
    assert len(posts) == 4 * 4 and len(set(posts)) == len(posts)  # 4 units x 4 candidates, once for both targets

    sent = []
    request = LLMClient._request

    def counting(self, url, data):
        if data is not None:
            sent.append(data.decode())
        return request(self, url, data)

    monkeypatch.setattr(LLMClient, "_request", counting)
    r = _run(*TWO_TARGETS, "--cassettes", str(cassettes), "--replay")
    assert r.exit_code == 0, r.output
    assert sorted(sent) == sorted(posts)  # each recorded explanation request asked for once, none other
    lines = r.output.splitlines()
    for line in TWO_TARGETS_LINES:
        assert line in lines, line


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


# `vse label --batch` on a recorded example: cassettes/examples/label-batch-output.jsonl holds the answers of the
# local llama-server (not OpenAI) to label-batch-input.jsonl, written in the Batch API's output shape by
# bench/batch_local.py (docs/labelling.md, "The Batch API").
BATCH_RUN = [
    "label", "efficientnet_lite0/_conv_head", "--method", "weight-label", "--units", "0:2", "--n", "2",
    "--model", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
]  # fmt: skip


def test_label_batch_round_trip_from_the_recorded_output(tmp_path):
    import json

    run = [*BATCH_RUN, "--out", str(tmp_path / "labels.jsonl")]
    cassette = tmp_path / "labels.cassette.json.gz"
    recorded = [json.loads(x) for x in (EXAMPLES / "label-batch-output.jsonl").read_text().splitlines()]
    assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in recorded)

    # 1. the run's requests are the recorded input, byte for byte
    r = _run(*run, "--batch", str(tmp_path / "in.jsonl"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "in.jsonl").read_bytes() == (EXAMPLES / "label-batch-input.jsonl").read_bytes()
    ids = [json.loads(x)["custom_id"] for x in (tmp_path / "in.jsonl").read_text().splitlines()]
    assert sorted(x["custom_id"] for x in recorded) == sorted(ids) and len(ids) == 4

    # 2. an output with an error line (the API's shape) and a missing line: two imported, two reported
    failed = {"id": "local-1", "custom_id": recorded[1]["custom_id"], "response": None,
              "error": {"code": "batch_expired", "message": "not executed before the batch expired"}}  # fmt: skip
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(x) + "\n" for x in (recorded[0], failed, recorded[3])))
    r = _run(*run, "--batch-import", str(partial))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == f"imported 2 replies into {cassette} (0 already there, skipped)"
    assert lines[1] == (
        f"errors: 1 line(s) not imported ({recorded[1]['custom_id']}: batch_expired: not executed before the batch"
        " expired)"
    )
    assert lines[2] == f"missing: 1 request(s) have no output line ({recorded[2]['custom_id']})"

    # 3. the next --batch holds exactly what is left; importing the same file again adds nothing
    r = _run(*run, "--batch", str(tmp_path / "left.jsonl"))
    left = [json.loads(x)["custom_id"] for x in (tmp_path / "left.jsonl").read_text().splitlines()]
    assert r.exit_code == 0 and sorted(left) == sorted([recorded[1]["custom_id"], recorded[2]["custom_id"]])
    r = _run(*run, "--batch-import", str(partial))
    assert r.output.splitlines()[0] == f"imported 0 replies into {cassette} (2 already there, skipped)"

    # 4. the whole recorded output: the rest comes in, nothing twice; nothing left to send
    r = _run(*run, "--batch-import", str(EXAMPLES / "label-batch-output.jsonl"))
    assert r.output.splitlines()[0] == f"imported 2 replies into {cassette} (2 already there, skipped)"
    r = _run(*run, "--batch", str(tmp_path / "none.jsonl"))
    assert r.output.startswith("nothing to send") and not (tmp_path / "none.jsonl").exists()

    # 5. the run itself, offline from the cassette: each explanation is the recorded reply (trimmed)
    r = _run(*run, "--replay", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "labelled 2 units" in r.output and "failed 0" in r.output
    texts = [x["response"]["body"]["choices"][0]["text"].strip() for x in recorded]
    records = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [rec["unit"] for rec in records] == [0, 1]
    explanations = [e["explanation"] for rec in records for e in rec["explanations"]]
    assert len(explanations) == 4 and all(any(t.startswith(e) for t in texts) for e in explanations)


# `vse label --sae` on a recorded example (docs/sae.md): the latents 0..7 of the committed `_conv_head` SAE,
# explained (best of 4) by the local llama-server, recorded with the command below into
# cassettes/examples/label-sae.json.gz (its embeddings in label-sae.embeddings.npz, its records in label-sae.jsonl).
SAE_RUN = [
    "label", "efficientnet_lite0/_conv_head", "--sae", "fixtures/efficientnet_lite0/sae__conv_head.npz",
    "--units", "0:8", "--method", "caption-activation", "--score", "--no-progress",
]  # fmt: skip


def test_label_sae_latents_replays_the_recorded_example_and_makes_an_atlas(tmp_path):
    cassette, out = tmp_path / "label-sae.json.gz", tmp_path / "label-sae.jsonl"
    shutil.copy(EXAMPLES / "label-sae.json.gz", cassette)
    shutil.copy(EXAMPLES / "label-sae.embeddings.npz", tmp_path / "label-sae.embeddings.npz")
    r = _run(*SAE_RUN, "--out", str(out), "--cassette", str(cassette), "--replay")
    assert r.exit_code == 0, r.output
    replayed = {x["unit"]: x for x in map(json.loads, out.read_text().splitlines())}
    recorded = {x["unit"]: x for x in map(json.loads, (EXAMPLES / "label-sae.jsonl").read_text().splitlines())}
    assert sorted(replayed) == list(range(8))
    for unit, rec in recorded.items():
        got = replayed[unit]
        assert (
            got["neuron"] == f"efficientnet_lite0/_conv_head/sae:fixtures/efficientnet_lite0/sae__conv_head.npz/{unit}"
        )
        assert got.get("status") == rec.get("status") and got.get("unscorable") == rec.get("unscorable")
        assert [e["explanation"] for e in got["explanations"]] == [e["explanation"] for e in rec["explanations"]]
        assert got.get("scores") == rec.get("scores")
    site = tmp_path / "atlas"
    r = _run("atlas", str(out), "--out", str(site))
    assert r.exit_code == 0, r.output
    cards = sorted(p.name for p in (site / "cards").iterdir())
    assert cards == [f"efficientnet_lite0___conv_head__sae-sae__conv_head__{u}.html" for u in sorted(range(8), key=str)]
    assert any((site / "img").rglob("*.png"))  # the latents' top probe images (the fixtures' thumbnails)
