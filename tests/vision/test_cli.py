import json

import numpy as np
from click.testing import CliRunner

from vse.cli.main import main


def test_vision_commands_registered():
    out = CliRunner().invoke(main, ["--help"]).output
    for cmd in ("activations", "weight-pairs", "weight-matrix", "captions", "dissect", "fixtures", "layers"):
        assert cmd in out


def test_weight_pairs_and_range_error(tmp_path):
    r = CliRunner().invoke(
        main, ["weight-pairs", "efficientnet_lite0/_conv_head/489", "--top", "3", "--json", str(tmp_path / "p.json")]
    )
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "\t" in line]
    assert len(lines) == 3 and all(float(line.split("\t")[0]) >= 0 for line in lines)
    assert len(json.loads((tmp_path / "p.json").read_text())["pairs"]) == 1000
    r = CliRunner().invoke(main, ["weight-pairs", "efficientnet_lite0/_blocks.15/320"])
    assert r.exit_code != 0 and "320 units" in r.output
    r = CliRunner().invoke(main, ["weight-pairs", "efficientnet_lite0/_blocks.14/3"])
    assert r.exit_code != 0 and "_depthwise_conv" in r.output


def test_dissect_command_text_backend(tmp_path):
    acts = np.zeros((4, 2), np.float16)
    acts[[0, 1], 0] = 5
    acts[[2, 3], 1] = 5
    ids = ["a.png", "b.png", "c.png", "d.png"]
    np.savez_compressed(
        tmp_path / "acts.npz",
        activations=acts,
        image_ids=np.array(ids),
        pooling=np.array("mean"),
        layer=np.array("x"),
        model=np.array("m"),
    )
    caps = ["A cat.", "A kitten asleep.", "A red truck.", "A lorry on the road."]
    (tmp_path / "probe.json").write_text(json.dumps([{"id": i, "caption": c} for i, c in zip(ids, caps, strict=True)]))
    (tmp_path / "concepts.txt").write_text("cat\ntruck\nsoup\n")
    r = CliRunner().invoke(
        main,
        [
            "dissect",
            "--activations",
            str(tmp_path / "acts.npz"),
            "--captions",
            str(tmp_path / "probe.json"),
            "--concepts",
            str(tmp_path / "concepts.txt"),
            "--top-k",
            "2",
            "--out",
            str(tmp_path / "d.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "d.json").read_text())
    assert [u["label"] for u in d["units"]] == ["cat", "truck"] and "stand-in" in d["backend"]
