import pytest

from vse.core.target import neuron_id, neuron_stem, parse_neuron_id
from vse.vision.models import (
    VisionModelError,
    WeightsMissingError,
    load_model,
    torchvision_checkpoint,
)


def test_neuron_ids_roundtrip():
    assert parse_neuron_id("efficientnet_lite0/_blocks.15/7") == ("efficientnet_lite0", "_blocks.15", 7)
    assert neuron_id("alexnet", "classifier.5", 489) == "alexnet/classifier.5/489"
    assert neuron_stem(*parse_neuron_id("alexnet/classifier.5/489")) == "alexnet__classifier.5__489"
    for bad in ("a/b", "a/b/c", "a//3", "/b/3", "a/b/-1", "a/b/3/4"):
        with pytest.raises(ValueError, match="is not MODEL/LAYER/INDEX"):
            parse_neuron_id(bad)


def test_unknown_model_lists_known_names():
    with pytest.raises(VisionModelError, match=r"known models: .*efficientnet_lite0.*alexnet"):
        load_model("no_such_net")


@pytest.mark.parametrize(
    "name, filename", [("alexnet", "alexnet-owt-7be5be79.pth"), ("vit_b_16", "vit_b_16-c867db91.pth")]
)
def test_missing_torchvision_weights_say_where_to_put_them(name, filename, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert torchvision_checkpoint(name) == (filename, str(tmp_path / "hub" / "checkpoints"))
    with pytest.raises(WeightsMissingError, match=rf"{filename}.*{tmp_path}/hub/checkpoints"):
        load_model(name)


def test_lite0_registry_entry(lite0):
    assert lite0.class_names[:2] == ["tench", "goldfish"] and len(lite0.class_names) == 1000
    assert lite0.mean == lite0.std == (0.5, 0.5, 0.5) and lite0.image_size == 224
    assert lite0.layer_names()[0] == "_conv_head" and "_blocks.15" in lite0.layer_names()
    assert lite0.layer_width("_blocks.15") == 320
    with pytest.raises(VisionModelError, match="has 1280 units"):
        lite0.check_neuron("_conv_head", 1280)
