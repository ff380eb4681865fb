"""The vision commands on a user's mistakes: one clear line, exit status 1 or 2, no traceback."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from vse.cli.main import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def clean_failure(r, code=2, *fragments):
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and not isinstance(r.exception, (AssertionError, TypeError, KeyError))
    for f in fragments:
        assert f in r.output, (f, r.output)


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    folder = tmp_path / "probe"
    folder.mkdir()
    for i, color in enumerate(["red", "blue"]):
        Image.new("RGB", (40, 40), color).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a {color} square\n")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_empty_image_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("activations", "--probe", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    clean_failure(r, 2, "has no images", "empty")
    assert not (tmp_path / "out").exists()


def test_all_unreadable_images_write_nothing(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"junk")
    (folder / "b.jpg").write_bytes(b"")
    r = run("activations", "--probe", str(folder), "--out", str(tmp_path / "out"))
    clean_failure(r, 2, "no readable image", "2 image(s) skipped")
    assert not list((tmp_path / "out").glob("*.npz"))


def test_activations_say_what_was_skipped_and_keep_no_absolute_path(images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("activations", "--probe", str(images), "--out", "out/deep", "--batch-size", "2")
    assert r.exit_code == 0, r.output
    assert "1 image(s) skipped" in r.output
    record = (tmp_path / "out" / "deep" / "run_record.json").read_text()
    assert str(tmp_path) not in record and json.loads(record)["root"] == "probe"
    data = np.load(tmp_path / "out" / "deep" / "activations__conv_head.npz")
    assert data["activations"].shape == (2, 1280)


def test_invalid_utf8_caption_names_file_and_line(images, tmp_path):
    (images / "img1.txt").write_bytes(b"a blue \xff square\n")
    r = run("captions", "--probe", str(images), "--out", str(tmp_path / "c.json"))
    clean_failure(r, 2, "img1.txt:1", "not valid UTF-8")


def test_invalid_utf8_in_captions_tsv_names_the_line(images, tmp_path):
    (images / "captions.tsv").write_bytes(b"img0.png\ta red square\nimg1.png\tblue \xc3\x28\n")
    r = run("captions", "--probe", str(images), "--out", str(tmp_path / "c.json"))
    clean_failure(r, 2, "captions.tsv:2", "not valid UTF-8")


@pytest.mark.parametrize(
    "args",
    [
        ["activations", "--batch-size", "0", "--out", "x"],
        ["captions", "--batch-size", "0", "--out", "x"],
        ["dissect", "--activations", "{acts}", "--captions", "{acts}", "--top-k", "0", "--out", "x"],
        ["weight-pairs", "efficientnet_lite0/_conv_head/1", "--top", "-3"],
    ],
)
def test_out_of_range_numbers_are_usage_errors(args, tmp_path):
    acts = tmp_path / "a.npz"
    acts.write_bytes(b"")
    r = run(*[a.format(acts=acts) for a in args])
    clean_failure(r, 2, "Invalid value")


def _acts(tmp_path, n=2):
    ids = [f"i{k}.png" for k in range(n)]
    np.savez_compressed(
        tmp_path / "acts.npz",
        activations=np.ones((n, 2), np.float16),
        image_ids=np.array(ids),
        pooling=np.array("mean"),
        layer=np.array("x"),
        model=np.array("m"),
    )
    (tmp_path / "probe.json").write_text(json.dumps([{"id": i, "caption": "c"} for i in ids]))
    return tmp_path / "acts.npz", tmp_path / "probe.json"


def test_missing_concepts_file(tmp_path):
    acts, caps = _acts(tmp_path)
    r = run(
        "dissect",
        "--activations",
        str(acts),
        "--captions",
        str(caps),
        "--concepts",
        str(tmp_path / "nope.txt"),
        "--out",
        str(tmp_path / "d.json"),
    )
    clean_failure(r, 2, "--concepts", "nope.txt")


def test_weight_pairs_labels_from_the_wrong_file(tmp_path):
    wrong = tmp_path / "probe.json"
    wrong.write_text(json.dumps([{"id": "a", "caption": "b"}]))
    r = run("weight-pairs", "efficientnet_lite0/_blocks.15/3", "--target", "_conv_head", "--labels", str(wrong))
    clean_failure(r, 2, "--labels", "probe.json", "vse dissect")


def test_weight_pairs_json_into_a_missing_folder(tmp_path):
    out = tmp_path / "new" / "folder" / "p.json"
    r = run("weight-pairs", "efficientnet_lite0/_conv_head/489", "--top", "1", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert len(json.loads(out.read_text())["pairs"]) == 1000
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"


def test_weight_pairs_of_the_classifier_itself():
    r = run("weight-pairs", "efficientnet_lite0/_fc/3")
    clean_failure(r, 1, "output layer")
    assert "target None" not in r.output


def test_layers_takes_the_model_as_readme_says_and_shows_widths():
    r = run("layers", "efficientnet_lite0")
    assert r.exit_code == 0, r.output
    rows = dict(line.split("\t") for line in r.stdout.splitlines() if "\t" in line)
    assert rows["_conv_head"] == "1280" and rows["_fc"] == "1000"
    r = run("layers", "nope_model")
    clean_failure(r, 1, "unknown model 'nope_model'")
