"""`vse sae train`'s library (`vse.vision.sae`): positions of a layer's map, a top-k SAE trained with overcomplete
(skipped where the optional extra is not installed), its file, and what the file keeps agreeing with `encode`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vse.vision import sae
from vse.vision.activations import activations_on_batch
from vse.vision.datasets import load_folder

needs_library = pytest.mark.skipif(
    not __import__("importlib.util").util.find_spec("overcomplete"), reason="the sae extra (overcomplete) is missing"
)


def _probe(tmp_path, n=6):
    g = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(g.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        (tmp_path / f"img{i}.txt").write_text(f"picture number {i}\n")
    return load_folder(tmp_path)


def test_positions_are_the_map_unpooled(tiny, tmp_path):
    probe = _probe(tmp_path)
    ids, maps = sae.layer_positions(tiny, probe, "proj", batch_size=4, progress=False)
    assert ids == [f"img{i}.png" for i in range(6)] and maps.shape == (6, 64, 3)  # 8x8 positions, 3 channels
    x = torch.stack([tiny.transform(probe.open(it)) for it in probe.items])
    pooled = activations_on_batch(tiny, ["proj"], x)["proj"]
    np.testing.assert_allclose(maps.mean(1), pooled, rtol=1e-5, atol=1e-6)  # the channel path's spatial mean


@needs_library
def test_train_on_probe_writes_a_file_whose_probe_codes_are_its_encoding(tiny, tmp_path):
    (tmp_path / "probe").mkdir()
    probe = _probe(tmp_path / "probe")
    config = sae.SaeConfig(latents=5, k=2, seed=3, epochs=2, batch_size=64)
    trained = sae.train_on_probe(tiny, probe, "proj", config, cache_dir=tmp_path / "cache", progress=False)
    path = trained.save(tmp_path / "sae.npz")
    back = sae.load_sae(path)
    assert (back.model, back.layer, back.k, back.latents, back.width) == ("tiny", "proj", 2, 5, 3)
    p = back.provenance
    assert p["library"] == "overcomplete" and p["seed"] == 3 and p["k"] == 2 and p["latents"] == 5
    assert p["probe"]["images"] == 6 and p["vectors"] == 6 * 64 and len(p["loss_per_epoch"]) == 2
    assert p["dead"] == len(back.dead) and p["always_on"] == len(back.always_on)
    assert back.probe_captions == tuple(f"picture number {i}" for i in range(6))
    # What the file keeps for its probe set is the spatial mean of `encode` under the file's own (rounded) weights.
    _ids, maps = sae.cached_positions(tiny, probe, "proj", cache_dir=tmp_path / "cache", progress=False)
    codes = sae.encode(maps.reshape(-1, 3), back.encoder, back.encoder_bias, 2, center=back.center)
    np.testing.assert_allclose(back.probe_activations, codes.reshape(6, 64, 5).mean(1), rtol=1e-4, atol=1e-5)
    assert (codes > 0).sum(1).max() <= 2
    # The same seed trains the same SAE.
    again = sae.train_on_probe(tiny, probe, "proj", config, cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(again.decoder, trained.decoder)


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(ModuleNotFoundError) as info:
        sae.library_version()
    assert info.value.name == "overcomplete"
    from vse.cli.errors import classify

    assert "pip install -e '.[sae]'" in classify(info.value)[1]
