import numpy as np
import pytest
import torch
import torch.nn as nn

from vse.vision.models import VisionModelError, wrap_module
from vse.vision.weights import ProductUndefined, select_sign, weight_label_pairs, weights_to


def test_eq1_product_matches_hand_computation(tiny):
    # fc @ diag(bn scale) @ proj, scales = gamma / sqrt(var + eps) = [1/2, 2/1, 1/3]:
    # diag(s) proj = [[.5, 0], [0, 4], [1/3, -1/3]];  fc @ that = [[.5, 4], [1, 3]]  ->  [unit, class] = transpose
    m = weights_to(tiny, "pre")
    np.testing.assert_allclose(m.weights, [[0.5, 1.0], [4.0, 3.0]], rtol=1e-6)
    assert [s.module for s in m.steps] == ["proj", "bn", "act", "pool", "flat", "fc"]
    assert [s.role for s in m.steps if s.role != "ignored"] == ["linear", "scale (folded)", "linear"]


def test_bn_folding_to_an_intermediate_target(tiny):
    m = weights_to(tiny, "pre", target="bn")
    np.testing.assert_allclose(m.weights, np.array([[0.5, 0, 1 / 3], [0, 4, -1 / 3]]), rtol=1e-6)
    # the folded affine map reproduces the BN output exactly on random channel vectors
    x = torch.randn(5, 2, 1, 1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = tiny.module.bn(tiny.module.proj(x)).flatten(1).numpy()
    got = x.flatten(1).numpy() @ m.weights + m.bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_last_hidden_layer_is_the_classifier_weights(tiny):
    m = weights_to(tiny, "act")
    np.testing.assert_allclose(m.weights, tiny.module.fc.weight.detach().numpy().T)


def test_product_refused_through_a_3x3_conv(tiny):
    with pytest.raises(ProductUndefined, match=r"pre is a 3x3 convolution"):
        weights_to(tiny, "inp")


def test_product_refused_for_a_flattened_spatial_map():
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 4))
    loaded = wrap_module("spatial", net, list("abcd"), image_size=8)
    with pytest.raises(ProductUndefined, match="spatial map"):
        weights_to(loaded, "1")


def test_unknown_layer_lists_valid_names(tiny):
    with pytest.raises(VisionModelError, match=r"valid layer names: .*proj.*fc"):
        weights_to(tiny, "nope")


def test_vit_layernorm_gamma_folded():
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8, num_classes=3
    )
    with torch.no_grad():
        vit.encoder.ln.weight.copy_(torch.arange(1.0, 9.0))
    loaded = wrap_module("vit", vit, ["a", "b", "c"], image_size=32)
    m = weights_to(loaded, "encoder.layers.encoder_layer_0")
    want = (vit.heads.head.weight.detach() * torch.arange(1.0, 9.0)).numpy().T
    np.testing.assert_allclose(m.weights, want, rtol=1e-6)


def test_signs():
    w = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(select_sign(w, "positive"), [0, 0, 3])
    np.testing.assert_array_equal(select_sign(w, "negative"), [2, 0, 0])
    np.testing.assert_array_equal(select_sign(w, "both"), w)
    with pytest.raises(ValueError, match="positive, negative, both"):
        select_sign(w, "absolute")


def test_weight_label_pairs_and_range(tiny):
    m = weights_to(tiny, "pre")
    assert weight_label_pairs(m, 1, ["cat", "dog"]) == [("cat", 4.0), ("dog", 3.0)]
    with pytest.raises(IndexError, match="has 2 units"):
        weight_label_pairs(m, 2, ["cat", "dog"])


def test_efficientnet_blocks15_product(lite0):
    net = lite0.module
    m = weights_to(lite0, "_blocks.15")
    s = (net._bn1.weight / torch.sqrt(net._bn1.running_var + net._bn1.eps)).detach()
    want = (net._fc.weight.detach().double() @ (s[:, None] * net._conv_head.weight.detach()[:, :, 0, 0]).double()).T
    np.testing.assert_allclose(m.weights, want.numpy(), rtol=1e-4, atol=1e-6)
    assert m.weights.shape == (320, 1000)
    with pytest.raises(ProductUndefined, match="_blocks.15._depthwise_conv"):
        weights_to(lite0, "_blocks.14")
