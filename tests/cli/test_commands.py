"""`vse explain` / `vse score` as a new user meets them: one clear line for each mistake, no traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from vse.cli.main import main


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["explain", "bad/neuron", "--method", "weight-label", "--replay"], "not MODEL/LAYER/INDEX"),
        (
            [
                "explain",
                "efficientnet_lite0/_conv_head/99999",
                "--method",
                "clip-dissect",
                "--base-url",
                "http://127.0.0.1:9/v1",
            ],
            "out of range",
        ),
        (
            [
                "explain",
                "efficientnet_lite0/_conv_head/5",
                "--method",
                "weight-label",
                "--replay",
                "--cassette",
                "nowhere/x.json.gz",
            ],
            "does not exist",
        ),
        (
            [
                "score",
                "efficientnet_lite0/_conv_head/5",
                "--target",
                "weight-label",
                "--explanation",
                "x",
                "--replay",
                "--cassette",
                "nowhere/x.json.gz",
            ],
            "does not exist",
        ),
        (
            [
                "score",
                "efficientnet_lite0/_conv_head/5",
                "--target",
                "weight-clip",
                "--explanation",
                "x",
                "--replay",
                "--cassette",
                "nowhere/x.json.gz",
            ],
            "no weight-clip fixtures for efficientnet_lite0/_conv_head",
        ),
        (
            ["score", "efficientnet_lite0/_conv_head/5", "--target", "weight-label"],
            "exactly one of --explanation TEXT or --from FILE",
        ),
    ],
)
def test_user_mistakes_get_one_clear_line(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code != 0
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert fragment in text and "Traceback" not in text


def test_clip_dissect_needs_no_llm_call(tmp_path, monkeypatch):
    # The baseline's label comes from the fixtures; with an unreachable server the command still works.
    monkeypatch.chdir(tmp_path)
    result = run(
        "explain",
        "efficientnet_lite0/_conv_head/5",
        "--method",
        "clip-dissect",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--out",
        "o.jsonl",
    )
    assert result.exit_code == 0, result.output
    assert "the main thing this neuron does is find truck" in result.output
    assert '"method": "clip-dissect"' in (tmp_path / "o.jsonl").read_text()


def test_help_names_every_method_and_target():
    explain_help = run("explain", "--help").output
    score_help = run("score", "--help").output
    for method in ("caption-activation", "weight-label", "weight-clip", "weight-explanation", "clip-dissect"):
        assert method in explain_help
    for target in ("caption-activation", "weight-label", "weight-clip"):
        assert target in score_help


def test_validate_replays_the_power_study_from_its_cassettes(tmp_path, monkeypatch):
    # `vse validate` on the power study's units and cassettes gives the committed summary.
    import json
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    study = json.loads((repo / "results/power-study/config.json").read_text())
    cassettes = tmp_path / "cassettes" / "validate"
    shutil.copytree(repo / "cassettes/power-study", cassettes)
    monkeypatch.chdir(tmp_path)
    units = ",".join(str(u) for u in study["units"])
    result = run(
        "validate",
        "efficientnet_lite0/_conv_head",
        "--units",
        units,
        "--cassettes",
        str(cassettes),
        "--replay",
        "--out",
        "s.json",
        "--rank-by",
        "scaled",
        "--pool",
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(
        (repo / "results/power-study/summary.json").read_text()
    )


def test_validate_needs_three_units():
    result = run("validate", "efficientnet_lite0/_conv_head", "--units", "1,2", "--replay")
    assert result.exit_code == 2 and "at least 3" in result.output


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--targets", "a,b", "unknown target 'a'"),
        ("--targets", "weight-label,weight-label", "--targets 'weight-label,weight-label': weight-label given twice"),
        ("--targets", "weight-label,", "--targets 'weight-label,': an empty name (a stray comma?)"),
        ("--methods", "weight-label,clip-dissect,weight-label", "weight-label given twice"),
    ],
)
def test_validate_names_a_wrong_method_or_target_before_any_call(tmp_path, option, value, says):
    # No cassette under --cassettes and no server: the line comes from the options alone.
    result = run("validate", "efficientnet_lite0/_conv_head", "--units", "8,9,10", option, value,
                 "--cassettes", str(tmp_path / "v"), "--replay")  # fmt: skip
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "v").exists()


def test_score_defaults_to_the_embedding_simulator_over_every_unseen_item(tmp_path, monkeypatch):
    # What the simulator study recommends: no LLM, no server; recorded next to the cassette, replayed from there.
    import numpy as np

    import vse.llm.server as server
    import vse.method.simulators.embedding as es

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(server, "LocalServer", lambda *a, **k: pytest.fail("no server for the embedding simulator"))
    monkeypatch.setattr(
        es,
        "_live_encoder",
        lambda: lambda texts: np.array([[len(t), t.count("e"), 1.0] for t in texts], dtype=np.float32),
    )
    args = [
        "score",
        "efficientnet_lite0/_conv_head/5",
        "--target",
        "weight-label",
        "--explanation",
        "dogs",
        "--cassette",
        "c.json.gz",
        "--out",
        "r.jsonl",
    ]
    live = run(*args)
    assert live.exit_code == 0, live.output
    assert (tmp_path / "c.embeddings.npz").exists() and not (tmp_path / "c.json.gz").exists()
    replay = run(*args[:-2], "--replay")
    assert replay.exit_code == 0, replay.output
    assert replay.output.splitlines()[0] == live.output.splitlines()[0]
    import json

    rec = json.loads((tmp_path / "r.jsonl").read_text())
    assert rec["provenance"]["simulator"] == "embedding" and rec["provenance"]["protocol"] == "recall-free"
    assert rec["passes"] == 1 and rec["half_width"] == 0.0  # one exact pass over the unseen items
    assert len(rec["details"][0]["items"]) == 1000 - 25  # every class outside the top 25 the explainer is shown


def test_score_from_a_file_chooses_on_held_in_items_and_reports_held_out_ones(tmp_path, monkeypatch):
    # Fair best of N: the explainer's shown items (in the records) are left out, the rest split in halves.
    import json

    import numpy as np

    import vse.method.simulators.embedding as es
    from vse.core.protocols import ranks
    from vse.data.loader import load_target
    from vse.method.records import ExplanationRecord, Provenance

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        es, "_live_encoder", lambda: lambda texts: np.array([[len(t), t.count("e"), 1.0] for t in texts], np.float32)
    )
    neuron = "efficientnet_lite0/_conv_head/5"
    shown = tuple(sorted(ranks(load_target(neuron, "weight-label", "positive").strength)[:25].tolist()))
    prov = Provenance("m", "completions", None, None, "h", (), 0)
    lines = [
        json.dumps(ExplanationRecord(neuron, "weight-label", "positive", text, k, 1, 1, 1, prov, shown=shown).to_json())
        for k, text in enumerate(["dogs", "reptiles and eels", "kitchen tools"])
    ]
    (tmp_path / "e.jsonl").write_text("\n".join(lines) + "\n")
    result = run("score", neuron, "--target", "weight-label", "--from", "e.jsonl", "--cassette", "c.json.gz",
                 "--out", "r.jsonl")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held-in scores (487 items, split seed 0):" in result.output
    assert "best of 3 on the 488 held-out items:" in result.output and result.output.count("<- chosen") == 1
    rec = json.loads((tmp_path / "r.jsonl").read_text())
    assert rec["best_of"]["held_in_items"] == 487 and len(rec["best_of"]["candidates"]) == 3
    assert len(rec["details"][0]["items"]) == 488 and not set(rec["details"][0]["items"]) & set(shown)
