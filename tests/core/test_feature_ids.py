"""Unit ids of a layer's features (`vse.core.target.Feature`): MODEL/LAYER/KIND:FILE/INDEX."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vse.core.target import Feature, feature_layer, neuron_id, neuron_stem, parse_neuron_id, split_layer
from vse.core.vocab import FeatureKind

paths = st.lists(st.text("abcxyz_.-019", min_size=1, max_size=6), min_size=1, max_size=4).map("/".join)


@given(kind=st.sampled_from(list(FeatureKind)), path=paths, index=st.integers(0, 10_000))
def test_a_feature_unit_id_round_trips(kind, path, index):
    neuron = f"efficientnet_lite0/_conv_head/{kind.value}:{path}/{index}"
    model, layer, unit = parse_neuron_id(neuron)
    assert (model, unit) == ("efficientnet_lite0", index)
    assert split_layer(layer) == ("_conv_head", Feature(kind, path))
    assert neuron_id(model, layer, unit) == neuron
    assert feature_layer(*split_layer(layer)) == layer


def test_a_channel_id_is_unchanged():
    assert parse_neuron_id("efficientnet_lite0/_blocks.15/7") == ("efficientnet_lite0", "_blocks.15", 7)
    assert split_layer("_blocks.15") == ("_blocks.15", None)
    assert neuron_stem("efficientnet_lite0", "_conv_head", 17) == "efficientnet_lite0___conv_head__17"


def test_a_latent_and_a_channel_never_share_a_stem():
    latent = neuron_stem(*parse_neuron_id("efficientnet_lite0/_conv_head/sae:runs/a b.npz/17"))
    assert latent == "efficientnet_lite0___conv_head__sae-a_b__17"
    assert latent != neuron_stem("efficientnet_lite0", "_conv_head", 17)
    assert "/" not in latent


@pytest.mark.parametrize(
    ("neuron", "says"),
    [
        ("efficientnet_lite0/_conv_head/x.npy/3", "not a feature of a layer"),
        ("efficientnet_lite0/_conv_head/pca:x.npy/3", "not a feature of a layer"),
        ("efficientnet_lite0/_conv_head/sae:/3", "not a feature of a layer"),
        ("efficientnet_lite0/_conv_head/sae:x.npz/a", "is not MODEL/LAYER/INDEX"),
    ],
)
def test_a_bad_feature_id_is_one_clear_error(neuron, says):
    with pytest.raises(ValueError, match=says):
        parse_neuron_id(neuron)
