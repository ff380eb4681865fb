"""A layer's features as units (`vse.data.loader` on `Feature` ids): directions and SAE latents from files,
their pairs as the module docstring defines them, and one clear line for a file that does not fit."""

from __future__ import annotations

import numpy as np
import pytest

from vse.core import exact
from vse.data import loader
from vse.errors import UserError
from vse.vision import fixtures
from vse.vision.sae import SaeFile, encode, load_sae

LAYER = "efficientnet_lite0/_conv_head"


def _directions(tmp_path, rows) -> str:
    path = tmp_path / "dirs.npy"
    np.save(path, np.asarray(rows, dtype=np.float64))
    return path.as_posix()


def _sae(tmp_path, *, model="efficientnet_lite0", layer="_conv_head", width=1280, latents=4, nan=False) -> str:
    rng = np.random.default_rng(0)
    probe = fixtures.load_probe()[:5]
    acts = rng.random((5, latents))
    acts[:, 3] = 0.0  # a dead latent
    if nan:
        acts[0, 0] = np.nan
    sae = SaeFile(
        model=model,
        layer=layer,
        k=2,
        center=np.zeros(width, np.float32),
        encoder=rng.normal(size=(latents, width)).astype(np.float32),
        encoder_bias=np.zeros(latents, np.float32),
        decoder=rng.normal(size=(latents, width)).astype(np.float32),
        frequency=np.array([0.5, 0.95, 0.1, 0.0]),
        probe_ids=tuple(p["id"] for p in probe),
        probe_captions=tuple(p["caption"] for p in probe),
        probe_activations=acts,
        provenance={"library": "test"},
    )
    path = tmp_path / "sae.npz"
    sae.save(path)
    return path.as_posix()


def test_a_one_hot_direction_is_its_channel_bit_for_bit(tmp_path):
    rows = np.zeros((2, 1280))
    rows[0, 5], rows[1, 5] = 1.0, -1.0
    f = _directions(tmp_path, rows)
    for kind in loader.FEATURE_KINDS:
        channel = loader.load_target(f"{LAYER}/5", kind)
        same = loader.load_target(f"{LAYER}/dir:{f}/0", kind)
        flipped = loader.load_target(f"{LAYER}/dir:{f}/1", kind, "negative")
        assert np.array_equal(same.raw, channel.raw) and same.texts == channel.texts
        # the other sign of a direction is its negative polarity: what it works against
        assert np.array_equal(flipped.values, channel.values)


def test_a_direction_mixes_its_channels_as_an_exact_dot(tmp_path):
    d = np.random.default_rng(1).normal(size=1280)
    f = _directions(tmp_path, d)  # one vector is one direction
    t = loader.load_target(f"{LAYER}/dir:{f}/0", "weight-label", "both")
    w, _names = fixtures.load_weight_label("_conv_head")
    assert t.raw[7] == exact.dot(w[:, 7].astype(np.float64), d)
    assert t.neuron == f"{LAYER}/dir:{f}/0" and t.name == "0"


def test_an_sae_latent_reads_its_files_probe_codes_and_its_atoms_weights(tmp_path):
    f = _sae(tmp_path)
    sae = load_sae(f)
    t = loader.load_target(f"{LAYER}/sae:{f}/2", "caption-activation")
    assert t.texts == sae.probe_captions and np.array_equal(t.raw, sae.probe_activations[:, 2])
    w = loader.load_target(f"{LAYER}/sae:{f}/2", "weight-label")
    weights, _ = fixtures.load_weight_label("_conv_head")
    assert w.raw[0] == exact.dot(weights[:, 0].astype(np.float64), sae.decoder[2].astype(np.float64))
    assert sae.dead == [3] and sae.always_on == [1]
    assert loader.feature_width("efficientnet_lite0", "_conv_head", loader.split_layer(f"_conv_head/sae:{f}")[1]) == 4


@pytest.mark.parametrize(
    ("make", "neuron", "says"),
    [
        (lambda p: _directions(p, np.zeros((2, 320))), LAYER + "/dir:{f}/0", "directions of width 320, but the layer"),
        (lambda p: _directions(p, [[np.nan] * 1280]), LAYER + "/dir:{f}/0", "NaN"),
        (lambda p: _directions(p, np.zeros((2, 1280))), LAYER + "/dir:{f}/2", "unit 2 out of range"),
        (
            lambda p: _sae(p, layer="_blocks.15", width=320),
            LAYER + "/sae:{f}/0",
            "trained on efficientnet_lite0/_blocks",
        ),
        (lambda p: _sae(p, width=320, layer="_conv_head"), LAYER + "/sae:{f}/0", "an SAE of width 320"),
        (lambda p: _sae(p, nan=True), LAYER + "/sae:{f}/0", "probe_activations holds 1 NaN"),
        (lambda p: _directions(p, np.zeros(1280)), LAYER + "/sae:{f}/0", "not an SAE file"),
        (lambda p: (p / "no.npz").as_posix(), LAYER + "/sae:{f}/0", "does not exist"),
    ],
)
def test_a_file_that_does_not_fit_is_one_line(tmp_path, make, neuron, says):
    loader.feature_file.cache_clear()
    f = make(tmp_path)
    with pytest.raises(UserError, match=says) as info:
        loader.load_target(neuron.format(f=f), "weight-label")
    assert "\n" not in str(info.value)


def test_a_feature_has_no_next_layer_pairs(tmp_path):
    f = _directions(tmp_path, np.zeros((1, 1280)))
    with pytest.raises(UserError, match="not weight-clip"):
        loader.load_target(f"{LAYER}/dir:{f}/0", "weight-clip")


def test_encode_keeps_the_k_largest_codes():
    enc = np.eye(4)
    z = encode(np.array([[3.0, -1.0, 2.0, 1.0]]), enc, np.zeros(4), 2, center=np.zeros(4))
    assert z.tolist() == [[3.0, 0.0, 2.0, 0.0]]
