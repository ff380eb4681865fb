"""Small probe sets: each corner case is one clear line, and a unit no protocol can score ends ``unscorable``
with its explanations kept, not a failed run.

- the issue's case: 48 synthetic images (4 colours x 3 shapes, one caption each) through the real
  EfficientNet-Lite0: a sparse unit's unseen images are all 0, so recall-free has nothing to correlate;
- fewer images than the explainer's display (12 images, 25 pairs shown): said before any call;
- one caption repeated for every image, a probe folder of 1 image: refused before any model runs;
- every unit sparse: the summary's last line says so;
- best of N with too few unseen items, and `vse score` of an unscorable unit: one line, no server, no call.

The LLM is the in-process stand-in of `tests/outputs/atlas_helpers.py` (its words mean nothing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vse.cli.main import main
from vse.cli.preflight import probe_size_notes
from vse.core.target import Target
from vse.core.vocab import Unscorability
from vse.method.score import ScoreConfig, Unscorable, check_scorable, draw_items

from ..outputs.atlas_helpers import fake_llm, make_probe, register_tinynet
from .test_label_cli import _sparse_fixtures
from .test_preflight import NEURON, Tripwire, one_line, tripwires  # noqa: F401  (a fixture)

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle", "triangle")


def shapes_probe(folder: Path) -> Path:
    """48 PNGs: 4 colours x 3 shapes x 4 sizes and backgrounds, each with its caption ("A red square.")."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            for v in range(4):
                img = Image.new("RGB", (64, 64), (255, 255, 255) if v % 2 == 0 else (200, 200, 200))
                draw, lo, hi = ImageDraw.Draw(img), 4 + 4 * v, 60 - 3 * v
                if shape == "square":
                    draw.rectangle([lo, lo, hi, hi], fill=rgb)
                elif shape == "circle":
                    draw.ellipse([lo, lo, hi, hi], fill=rgb)
                else:
                    draw.polygon([(32, lo), (lo, hi), (hi, hi)], fill=rgb)
                img.save(folder / f"img{k:02d}.png")
                (folder / f"img{k:02d}.txt").write_text(f"A {colour} {shape}.\n", encoding="utf-8")
                k += 1
    return folder


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def _records(path: Path) -> dict[int, dict]:
    return {r["unit"]: r for r in (json.loads(line) for line in path.read_text().splitlines())}


@pytest.mark.slow
def test_the_issues_48_image_probe_ends_unscorable_not_failed(tmp_path, monkeypatch):
    """`vse label efficientnet_lite0/_blocks.15 --probe DIR --method caption-activation --score` on 48 synthetic
    images: unit 1 has non-zero values on fewer images than the 25 the explainer is shown, so every image it did
    not see is 0: the unit ends unscorable, in words, its 4 explanations kept, and the run exits 0."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    seen = fake_llm(monkeypatch)
    probe = shapes_probe(tmp_path / "shapes48")
    out = tmp_path / "l.jsonl"
    args = ["label", "efficientnet_lite0/_blocks.15", "--probe", str(probe), "--method", "caption-activation",
            "--units", "1:2", "--score", "--base-url", "http://llm.test/v1", "--out", str(out),
            "--no-progress"]  # fmt: skip
    r = _run(*args)
    assert r.exit_code == 0, r.output + r.stderr
    reason = (
        "all 23 items the explainer did not see have the same value (0); give a larger probe set, or score with "
        "--simulator one --n 1, whose uniform passes include the shown items"
    )
    assert f"unit 1 is unscorable: {reason}" in r.stderr and "unscorable 1 (explained, not scored)" in r.stderr
    assert "failed 0" in r.stderr and "Traceback" not in r.output + r.stderr
    rec = _records(out)[1]
    assert rec["status"] == "unscorable" and rec["unscorable"] == reason
    assert len(rec["explanations"]) == 4 and "scores" not in rec
    assert all(s["body"].get("max_tokens") != 1 for s in seen)  # explanation calls only: no simulation
    n_calls = len(seen)
    r = _run(*args)  # final: the resume skips it
    assert r.exit_code == 0 and "skipped 1 already done" in r.stderr and len(seen) == n_calls, r.stderr
    r = _run("atlas", str(out), "--out", str(tmp_path / "site"))
    assert r.exit_code == 0, r.output
    card = (tmp_path / "site" / "cards" / "efficientnet_lite0___blocks.15__1.html").read_text()
    assert '<mark class="unscorable"' in card and "all 23 items the explainer did not see" in card


def test_fewer_images_than_the_display_is_said_first_and_every_unit_ends_unscorable(tmp_path, monkeypatch):
    """12 images, 25 pairs shown: the explainer sees every image; the recall-free score has nothing left."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    seen = fake_llm(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    args = ["label", "tinynet/conv", "--probe", str(probe), "--method", "caption-activation", "--score",
            "--base-url", "http://llm.test/v1", "--no-progress", "--n", "1"]  # fmt: skip
    r = _run(*args)
    assert r.exit_code == 0, r.output + r.stderr
    warning = (
        "vse: warning: the probe set has 12 images and the explainer is shown up to 25: it sees every one, so no "
        "unit can be scored on images it did not see"
    )
    assert r.stderr.startswith(warning), r.stderr
    assert "unscorable 4 (explained, not scored)" in r.stderr
    assert "unit 0 is unscorable: the explainer was shown all 12 items: none is left that it did not see" in r.stderr
    assert "no unit of this run could be scored (0 dead, 4 unscorable)" in r.stderr  # every unit: one last line
    assert len(seen) == 4  # one explanation per unit, no simulation
    r = _run(*args[:-2], "--simulator", "one", "--n", "1", "--out", str(tmp_path / "one.jsonl"))
    assert r.exit_code == 0 and "warning" not in r.stderr and "labelled 4 units" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("n_images", "kw", "expected"),
    [
        (12, {"score": True, "every_item": False, "n": 1}, "it sees every one"),
        (26, {"score": True, "every_item": False, "n": 1}, "it sees all but 1"),
        (30, {"score": True, "every_item": False, "n": 4}, "the 5 left are too few to choose the best of 4 on"),
        (30, {"score": True, "every_item": False, "n": 1}, None),  # one explanation on 5 unseen images: scorable
        (12, {"score": True, "every_item": True, "n": 1}, None),  # --simulator one --n 1 uses the shown images
        (12, {"score": False, "every_item": False, "n": 4}, None),  # explaining only
        (500, {"score": True, "every_item": False, "n": 4}, None),
    ],
)
def test_probe_size_notes(n_images, kw, expected):
    notes = probe_size_notes(n_images, n_shown=25, **kw)
    if expected is None:
        assert notes == []
    else:
        [note] = notes
        assert expected in note and f"{n_images} images" in note


def test_one_caption_for_every_image_is_refused_before_any_model_runs(tripwires, tmp_path):  # noqa: F811
    probe = make_probe(tmp_path / "same")
    for caption in probe.glob("*.txt"):
        caption.write_text("A shape.\n")
    for args in (
        ["explain", f"{NEURON}/3", "--method", "caption-activation", "--probe", str(probe)],
        ["label", NEURON, "--method", "caption-activation", "--units", "0:3", "--probe", str(probe)],
        ["score", f"{NEURON}/3", "--target", "caption-activation", "--explanation", "x", "--probe", str(probe)],
    ):
        one_line(_run(*args), 2, "all 12 images have the same caption ('A shape.')", "caption each image")


def test_a_probe_folder_of_one_image_is_refused_before_any_model_runs(tripwires, tmp_path):  # noqa: F811
    from PIL import Image

    probe = tmp_path / "one"
    probe.mkdir()
    Image.new("RGB", (32, 32), "red").save(probe / "img0.png")
    (probe / "img0.txt").write_text("a red square\n")
    for args in (
        ["explain", f"{NEURON}/3", "--method", "caption-activation", "--probe", str(probe)],
        ["label", NEURON, "--method", "caption-activation", "--units", "0:3", "--probe", str(probe)],
    ):
        one_line(_run(*args), 2, f"probe folder {probe} has 1 image", "give at least 2 images")


@pytest.mark.parametrize("protocol", ["recall-free", "uniform"])
def test_vse_score_of_an_unscorable_unit_is_one_line_before_any_server_or_call(
    tripwires,  # noqa: F811
    monkeypatch,
    tmp_path,
    protocol,
):
    monkeypatch.chdir(tmp_path)
    _sparse_fixtures(monkeypatch, [3], keep=20)
    args = ["score", f"{NEURON}/3", "--target", "caption-activation", "--explanation", "dogs", "--mode", "one"]
    if protocol == "uniform":  # what the remedy says: the uniform protocol includes the shown items
        r = _run(*args, "--protocol", protocol)
        assert isinstance(r.exception, Tripwire)  # it went on to start the server: the unit is scorable
        return
    line = one_line(_run(*args, "--protocol", protocol), 2)
    assert line == (
        f"vse: error: {NEURON}/3: all 675 items the explainer did not see have the same value (0); give a larger "
        "probe set, or score with --protocol uniform, which includes the shown items"
    )


def test_vse_score_from_candidates_with_too_few_unseen_items_is_one_line(tripwires, monkeypatch, tmp_path):  # noqa: F811
    from vse.core.protocols import ranks
    from vse.data.loader import load_target
    from vse.method.records import ExplanationRecord, Provenance

    monkeypatch.chdir(tmp_path)
    prov = Provenance("m", "completions", None, None, "h", (), 0)
    unseen = ranks(load_target(f"{NEURON}/2", "weight-label").strength)[[0, 10, 500]].tolist()  # 3 values
    shown = tuple(i for i in range(1000) if i not in unseen)  # the explainer saw all but 3 classes
    path = tmp_path / "e.jsonl"
    path.write_text(
        "".join(
            json.dumps(ExplanationRecord(f"{NEURON}/2", "weight-label", "positive", t, k, 1, 1, 1, prov, shown=shown)
                       .to_json()) + "\n"
            for k, t in enumerate(["dogs", "cats"])
        )
    )  # fmt: skip
    r = _run("score", f"{NEURON}/2", "--target", "weight-label", "--from", str(path), "--mode", "one")
    line = one_line(r, 2, "best of 2 chooses on items the explainer was not shown, and only 3 of the 1000 items")
    assert re.search(r"too few to split .*; give a larger probe set, or score one explanation \(--n 1\)", line)


def test_a_sparse_unit_under_uniform_draws_says_so_in_words():
    """Random draws of 10 of 10,000 items with one non-zero: each draw is all 0, however often it is redrawn."""
    raw = np.zeros(10_000)
    raw[5] = 1.0
    target = Target("m/l/6", "weight-label", tuple(map(str, range(10_000))), raw)
    config = ScoreConfig(mode="one", protocol="uniform", n_items=10)
    check_scorable(target, config)  # the items differ: the check before any call lets it through
    with pytest.raises(Unscorable) as err:
        draw_items(target, config, np.random.default_rng(0))
    assert err.value.why == Unscorability.DRAWS
    assert err.value.reason == (
        "100 draws in a row of 10 of its 10000 items each had one value: only 1 of them differs from the most "
        "common value; score with --protocol recall-free or all, which use each item once, or with more --n-items"
    )


def test_vse_explain_keeps_its_candidates_when_none_can_be_chosen(tmp_path, monkeypatch):
    """`vse explain --n 2` on 12 images: the explainer saw every one, so the candidates cannot be compared; they
    are printed and written all the same, with one warning line, and the command exits 0."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    fake_llm(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    out = tmp_path / "e.jsonl"
    r = _run("explain", "tinynet/conv/0", "--method", "caption-activation", "--n", "2", "--probe", str(probe),
             "--base-url", "http://llm.test/v1", "--out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output + r.stderr
    assert (
        "vse: warning: no best of 2 chosen: the explainer was shown all 12 items: none is left that it did not see; "
        "the candidates above are kept, unscored; give a larger probe set to choose among them"
    ) in r.stderr
    assert r.output.count("the main thing this neuron does is find") == 2 and len(out.read_text().splitlines()) == 2
