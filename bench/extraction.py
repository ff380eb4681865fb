"""Benchmark: activation extraction (forward hooks + pooling) against a plain forward pass.

Same model, same input batch, same process; the two are interleaved (plain, hooked, plain, ...)
so load changes on the machine hit both alike, and the ratio is the median of the per-pair ratios.
Image decoding is left out on purpose: both sides would pay it equally.

    .venv/bin/python bench/extraction.py [--model efficientnet_lite0] [--batch 16] [--pairs 9] [--device cuda]

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
    args = ap.parse_args(argv)

    import torch

    from vse.vision.activations import LayerHooks, resolve_device
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
            out = {layer: torch.cat(v).numpy() for layer, v in hooks.outputs.items()}
        sync()
        assert all(a.shape[0] == args.batch for a in out.values())
        return time.perf_counter() - t

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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
