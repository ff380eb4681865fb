"""Benchmark: activation extraction (forward hooks + pooling) against a plain forward pass.

Same model, same input batch, same process; the two are interleaved (plain, hooked, plain, ...)
so load changes on the machine hit both alike, and the ratio is the median of the per-pair ratios.
Image decoding is left out on purpose: both sides would pay it equally.

    .venv/bin/python bench/extraction.py [--model efficientnet_lite0] [--batch 16] [--pairs 9] [--device cuda]
    .venv/bin/python bench/extraction.py --device cuda --batch 64 --images 2048 --workers 8   # and the whole path

With ``--device cuda`` both sides run on the GPU (input already there, as a DataLoader with pinned
memory delivers it) and each timing waits for the GPU to finish (``torch.cuda.synchronize``).

Target: hooks and pooling cost under 5% (ratio < 1.05).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

IMAGE_SIDE = 256


def whole_extraction(loaded, args, dev) -> dict:
    """`extract_activations` end to end on random JPEGs written to a scratch folder (one untimed warm-up run on
    the first batch's worth): what a user's `vse activations --device ...` does per image."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from vse.vision.activations import extract_activations
    from vse.vision.datasets import load_folder

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="vse-extract-") as tmp:
        for k in range(args.images):
            pixels = rng.integers(0, 255, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(Path(tmp) / f"img{k:05d}.jpg", quality=90)
        probe = load_folder(tmp)
        common = dict(
            batch_size=args.batch, pooling=args.pooling, num_workers=args.workers, device=str(dev), progress=False
        )
        warm = load_folder(tmp)
        warm.items = warm.items[: args.batch]
        extract_activations(loaded, warm, args.layers, **common)
        t = time.perf_counter()
        out = extract_activations(loaded, probe, args.layers, **common)
        wall = time.perf_counter() - t
    assert len(out.image_ids) == args.images
    return {
        "extraction_images": args.images,
        "extraction_workers": args.workers,
        "extraction_s": wall,
        "extraction_images_per_s": args.images / wall,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layers", nargs="+", default=["_conv_head", "_blocks.15", "_fc"])
    ap.add_argument("--pooling", default="mean", choices=["mean", "max"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument(
        "--images",
        type=int,
        default=0,
        help="also time vse's whole extraction (extract_activations: decode, transform, forward, hooks) "
        "on this many random JPEGs, at --batch",
    )
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for --images")
    args = ap.parse_args(argv)

    import torch

    from vse.vision.activations import LayerHooks, full_fp32, resolve_device
    from vse.vision.models import load_model

    loaded = load_model(args.model)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.batch, 3, loaded.image_size, loaded.image_size, generator=gen) * 2 - 1
    dev = resolve_device(args.device)
    x = x.to(dev)
    net = loaded.module.to(dev)
    # CUDA runs asynchronously: without a sync the clock would stop before the GPU is done.
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def plain() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            net(x)
        sync()
        return time.perf_counter() - t

    def hooked() -> float:
        t = time.perf_counter()
        with torch.inference_mode(), LayerHooks(loaded, args.layers, args.pooling) as hooks:
            net(x)
            hooks.to_host()  # as vse's extraction does after each batch
            out = {layer: torch.cat(v).numpy() for layer, v in hooks.outputs.items()}
        sync()
        assert all(a.shape[0] == args.batch for a in out.values())
        return time.perf_counter() - t

    # As vse extracts: float32 throughout (TF32 off on CUDA), for both sides.
    fp32 = full_fp32(dev)
    fp32.__enter__()
    plain(), hooked()  # warm-up
    p_times, h_times, ratios = [], [], []
    for i in range(args.pairs):
        # alternate which goes first so a drift in machine load does not favour one side
        if i % 2 == 0:
            p, h = plain(), hooked()
        else:
            h, p = hooked(), plain()
        p_times.append(p)
        h_times.append(h)
        ratios.append(h / p)
    res = {
        "model": args.model,
        "layers": args.layers,
        "pooling": args.pooling,
        "batch": args.batch,
        "pairs": args.pairs,
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "plain_median_s": statistics.median(p_times),
        "hooked_median_s": statistics.median(h_times),
        "ratio_median_of_pairs": statistics.median(ratios),
        "ratio_of_medians": statistics.median(h_times) / statistics.median(p_times),
        "plain_images_per_s": args.batch / statistics.median(p_times),
        "hooked_images_per_s": args.batch / statistics.median(h_times),
    }
    print(
        f"extraction vs plain forward, {args.model}, batch {args.batch}, layers {', '.join(args.layers)}, "
        f"on {res['device_name']}:"
    )
    print(f"  plain  {res['plain_median_s']:.3f} s/batch ({res['plain_images_per_s']:.1f} img/s)")
    print(f"  hooked {res['hooked_median_s']:.3f} s/batch ({res['hooked_images_per_s']:.1f} img/s)")
    verdict = "OK (< 5%)" if res["ratio_median_of_pairs"] < 1.05 else "over the 5% target"
    print(f"  ratio  {res['ratio_median_of_pairs']:.4f} (median of {args.pairs} interleaved pairs) {verdict}")
    if args.images:
        res.update(whole_extraction(loaded, args, dev))
        print(
            f"  whole extraction ({args.images} JPEGs {IMAGE_SIDE}x{IMAGE_SIDE}, {args.workers} workers): "
            f"{res['extraction_images_per_s']:.1f} img/s, "
            f"{res['extraction_images_per_s'] / res['hooked_images_per_s']:.1%} "
            "of the hooked forward's rate"
        )
    fp32.__exit__(None, None, None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
