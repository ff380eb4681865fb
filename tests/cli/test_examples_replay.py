"""The recommended path (docs/reference.md, "Best of N, fairly"), replayed offline from the committed
example cassettes (recorded live from the local llama-server with the commands below): best of N through
`vse explain` and `vse validate`."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from vse.cli.main import main

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
