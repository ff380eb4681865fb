import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from vse.vision.activations import (
    LayerHooks,
    activations_on_batch,
    extract_activations,
    load_activations_npz,
    pool,
    record_raw,
    save_activations,
)
from vse.vision.datasets import load_folder
from vse.vision.models import HookPoint, VisionModelError, wrap_module


def test_pool_mean_max_and_class_token():
    t = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    np.testing.assert_allclose(pool(t, "mean").numpy(), t.view(2, 3, 4).mean(-1).numpy())
    np.testing.assert_allclose(pool(t, "max").numpy(), t.view(2, 3, 4).amax(-1).numpy())
    tokens = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(pool(tokens, "mean").numpy(), tokens[:, 0].numpy())  # ViT: class token
    with pytest.raises(ValueError, match="mean, max"):
        pool(t, "median")


def test_hooks_pool_inside_and_match_raw(tiny):
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    acts = activations_on_batch(tiny, ["proj", "fc"], x)
    raw = record_raw(tiny, ["proj"], x)["proj"]
    np.testing.assert_allclose(acts["proj"], raw.mean(dim=(2, 3)).numpy(), rtol=1e-6)
    assert acts["fc"].shape == (4, 2)


def test_input_hook_alias_reads_the_post_activation_map(tiny):
    tiny.aliases["head"] = HookPoint("pool", "input", "ReLU output")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = activations_on_batch(tiny, ["head"], x)["head"]
    with torch.no_grad():
        m = tiny.module
        want = m.act(m.bn(m.proj(m.pre(x)))).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(a, want, rtol=1e-6)
    assert (a >= 0).all()


def test_shared_module_is_refused():
    act = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(3, 2, 1), act, nn.Conv2d(2, 2, 1), act, nn.Flatten(), nn.LazyLinear(2))
    loaded = wrap_module("shared", net, ["a", "b"], image_size=4)
    with pytest.raises(ValueError, match="shared module"):
        activations_on_batch(loaded, ["1"], torch.zeros(1, 3, 4, 4))


def test_widths_and_neuron_range(tiny):
    assert tiny.layer_width("proj") == 3
    with pytest.raises(VisionModelError, match="has 3 units"):
        tiny.check_neuron("proj", 3)
    with pytest.raises(VisionModelError, match="valid layer names"):
        tiny.layer_width("nope")


def test_lite0_conv_head_is_post_relu6_head(lite0):
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    raw = record_raw(lite0, ["_conv_head"], x)["_conv_head"]
    with torch.inference_mode():
        want = lite0.module.extract_features(x)
    torch.testing.assert_close(raw, want)
    assert raw.shape[1] == 1280 and raw.min() >= 0 and raw.max() <= 6


def test_extraction_skips_corrupt_images_and_roundtrips(tiny, tmp_path):
    g = np.random.default_rng(0)
    for name in ("a.png", "b.png", "d.png"):
        Image.fromarray(g.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    probe = load_folder(tmp_path)
    res = extract_activations(tiny, probe, ["proj"], batch_size=2, progress=False)
    assert res.image_ids == ["a.png", "b.png", "d.png"]
    assert [s["id"] for s in res.skipped] == ["c.png"] and "c.png" in res.skipped[0]["reason"]
    # same numbers as one batch through the hooks
    x = torch.stack([tiny.transform(probe.open(it)) for it in probe.items if it.id != "c.png"])
    np.testing.assert_allclose(res.activations["proj"], activations_on_batch(tiny, ["proj"], x)["proj"], rtol=1e-5)
    path = save_activations(tmp_path / "out" / "activations_proj.npz", res, "proj")
    data = load_activations_npz(path)  # allow_pickle=False inside
    assert data["activations"].dtype == np.float16 and data["activations"].shape == (3, 3)
    assert data["image_ids"] == res.image_ids and data["pooling"] == "mean" and data["layer"] == "proj"


def test_hooks_are_removed(tiny):
    with LayerHooks(tiny, ["proj"]) as h:
        pass
    assert not h._handles and not tiny.module.proj._forward_hooks


def test_full_fp32_turns_tf32_off_on_cuda_only_and_restores_it():
    from vse.vision.activations import full_fp32

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_fp32("cpu"):
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with full_fp32("cuda:0"):  # the flags can be read and set without a GPU
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_pooled_rows_already_on_the_host_are_left_alone(tiny):
    # Inside the hook the rows stay on the model's device (no wait for a GPU mid-pass) and to_host copies the
    # new ones in one go (checked against the CPU on a GPU by test_cuda_matches_cpu); rows on the CPU stay put.
    x = torch.zeros(2, 3, 8, 8)
    with LayerHooks(tiny, ["proj"]) as h:
        tiny.module(x)
        stored = h.outputs["proj"][0]
        h.to_host()
        assert h.outputs["proj"][0] is stored


def _random_images(folder, n, size=(40, 56)):
    g = np.random.default_rng(1)
    for k in range(n):
        Image.fromarray(g.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"img{k}.png")
    return load_folder(folder)


def test_worker_processes_and_cpu_device_give_the_old_numbers(lite0, tmp_path):
    """--workers/--device cpu must not change a single bit of what the single-process path gives."""
    probe = _random_images(tmp_path, 5)
    layers = ["_conv_head", "_blocks.15"]
    old = extract_activations(lite0, probe, layers, batch_size=2, progress=False)
    new = extract_activations(lite0, probe, layers, batch_size=2, num_workers=2, device="cpu", progress=False)
    assert new.image_ids == old.image_ids == [f"img{k}.png" for k in range(5)]
    for layer in layers:
        np.testing.assert_array_equal(new.activations[layer], old.activations[layer])
    # and the same as one batch of the same images through the hooks (the old per-batch path)
    x = torch.stack([lite0.transform(probe.open(it)) for it in probe.items])
    one = activations_on_batch(lite0, layers, x)
    for layer in layers:
        np.testing.assert_allclose(new.activations[layer], one[layer], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tiny, tmp_path):
    from click.testing import CliRunner

    from vse.cli.vision import activations_cmd
    from vse.vision.activations import resolve_device

    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not supported|unknown device"):
        resolve_device("tpu")
    r = CliRunner().invoke(activations_cmd, ["--device", "cuda", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no CUDA GPU" in r.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(lite0, tmp_path):
    probe = _random_images(tmp_path, 4)
    layers = ["_conv_head", "_blocks.15"]  # two layers: to_host copies them in one go and splits the columns
    cpu = extract_activations(lite0, probe, layers, batch_size=2, progress=False)
    gpu = extract_activations(lite0, probe, layers, batch_size=2, num_workers=2, device="cuda", progress=False)
    lite0.module.to("cpu")
    for layer in layers:  # float32 on both (TF32 off: `full_fp32`)
        np.testing.assert_allclose(gpu.activations[layer], cpu.activations[layer], rtol=1e-3, atol=1e-4)
