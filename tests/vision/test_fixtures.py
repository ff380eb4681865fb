import ast
import json
from pathlib import Path

import numpy as np

from vse.vision import fixtures as F

ROOT = F.fixtures_root()


def test_loader_module_imports_only_numpy_at_top():
    tree = ast.parse(Path(F.__file__).read_text())
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {
        "__future__",
        "io",
        "json",
        "os",
        "functools",
        "pathlib",
        "numpy",
    }  # stdlib + numpy: no torch, no PIL at import


def test_weight_label_fixtures():
    w, names = F.load_weight_label("_conv_head")
    assert w.shape == (1280, 1000) and w.dtype == np.float32 and len(names) == 1000 and names[1] == "goldfish"
    assert (w < 0).any() and (w > 0).any()  # raw, signed
    w15, _ = F.load_weight_label("_blocks.15")
    assert w15.shape == (320, 1000)


def test_weight_label_fixture_is_the_real_classifier(lite0):
    w, _ = F.load_weight_label("_conv_head")
    np.testing.assert_array_equal(w, lite0.module._fc.weight.detach().numpy().T)


def test_probe_and_activation_fixtures():
    probe = F.load_probe()
    assert len(probe) >= 500 and all(p["caption"] for p in probe)
    for layer, width in (("_conv_head", 1280), ("_blocks.15", 320), ("_fc", 1000)):
        a, ids = F.load_activations(layer)
        assert a.shape == (len(probe), width) and np.isfinite(a).all()
        assert ids == [p["id"] for p in probe]
        with np.load(ROOT / "tuxpaint" / f"activations_{layer}.npz", allow_pickle=False) as z:
            assert z["activations"].dtype == np.float16 and str(z["pooling"]) == "mean"
    a, _ = F.load_activations("_conv_head")
    assert a.min() >= 0 and a.max() <= 6  # post-ReLU6
    rec = F.load_run_record()
    assert rec["n_images"] == len(probe) and isinstance(rec["skipped"], list) and rec["excluded"]


def test_dissect_and_weight_clip_fixtures():
    units = F.load_dissect("_conv_head")
    assert [u["unit"] for u in units] == list(range(1280)) and all(u["label"] for u in units)
    data = json.loads((ROOT / "tuxpaint" / "dissect__conv_head.json").read_text())
    assert "stand-in for CLIP" in data["backend"] and data["concept_set"]["size"] == 20000
    w, labels = F.load_weight_clip("_blocks.15")
    assert w.shape == (320, 1280) and labels == [u["label"] for u in units]
    val = json.loads((ROOT / "tuxpaint" / "dissect__fc_validation.json").read_text())
    assert val["results_by_concept_set_and_top_k"]["class_names"]["10"]["all_1000"]["top1"] > 0.05


def test_dissect_second_last_layer_matches_the_head_fixture():
    units = F.load_dissect("_blocks.15")
    assert [u["unit"] for u in units] == list(range(320)) and all(u["label"] for u in units)
    head = json.loads((ROOT / "tuxpaint" / "dissect__conv_head.json").read_text())
    data = json.loads((ROOT / "tuxpaint" / "dissect__blocks.15.json").read_text())
    assert data["layer"] == "_blocks.15" and data["n_images"] == head["n_images"]
    # same backend, concept set and soft-WPMI parameters: the two layers' labels are comparable
    for key in ("backend", "concept_set", "params", "probe", "model"):
        assert data[key] == head[key], key
    # a real labelling, not a copy of the head's: labels vary and are not the head's first 320
    assert len({u["label"] for u in units}) > 100
    assert [u["label"] for u in units] != [u["label"] for u in head["units"][:320]]


def test_fixtures_are_small_and_documented():
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert total < 25e6
    readme = (ROOT / "README.md").read_text()
    for p in ROOT.rglob("*"):
        if p.is_file() and p.name != "README.md":
            assert p.name in readme, f"{p.name} is not described in fixtures/README.md"
