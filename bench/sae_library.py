"""Which top-k SAE `vse sae train` uses: the kept library (overcomplete 0.3.0's ``TopKSAE`` and ``train_sae``, as
`vse.vision.sae.train` calls them) against the same model written here in plain torch (linear encoder started
from the dictionary, ReLU, top-k, unit-norm dictionary atoms, Adam, MSE), on the same positions, seed, epochs and
batches (one seeded order shared by both).

    python bench/sae_library.py                 # the cached positions of `vse sae train ... --probe tuxpaint`
    python bench/sae_library.py --epochs 3 --latents 1280 --k 16

Reads the positions `vse sae train` cached under .vse-cache/ (run it once first). Prints one Markdown row per
implementation: train seconds, R^2 and mse of the reconstruction, dead latents, always-on latents. The own
version exists only here, to measure against: vse trains with the library.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vse.vision import sae


def own_topk(x: torch.Tensor, config: sae.SaeConfig) -> dict[str, np.ndarray]:
    """The same model and loop as `sae.train` with overcomplete, written out in torch."""
    torch.manual_seed(config.seed)
    center = x.mean(0)
    x = x - center
    dictionary = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(config.latents, x.shape[1])))
    with torch.no_grad():
        dictionary /= dictionary.norm(dim=1, keepdim=True) + 1e-8
    encoder = torch.nn.Parameter(dictionary.detach().clone())
    bias = torch.nn.Parameter(torch.zeros(config.latents))
    params = [encoder, bias, dictionary]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            xb = x[order[start : start + config.batch_size]]
            with torch.no_grad():
                dictionary /= dictionary.norm(dim=1, keepdim=True) + 1e-8
            pre = torch.relu(xb @ encoder.T + bias)
            top = torch.topk(pre, config.k, dim=1)
            z = torch.zeros_like(pre).scatter(1, top.indices, top.values)
            loss = (xb - z @ dictionary).square().mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
    with torch.no_grad():
        dictionary /= dictionary.norm(dim=1, keepdim=True) + 1e-8
    return {
        "center": center.numpy().astype(np.float32),
        "encoder": encoder.detach().numpy().astype(np.float16),
        "encoder_bias": bias.detach().numpy(),
        "decoder": dictionary.detach().numpy().astype(np.float16),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(".vse-cache"))
    ap.add_argument("--latents", type=int, default=1280)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    found = sorted(args.cache.glob("efficientnet_lite0___conv_head__positions__tuxpaint-*.npy"))
    if not found:
        raise SystemExit("no cached positions: run `vse sae train efficientnet_lite0/_conv_head --probe tuxpaint`")
    maps = np.load(found[-1]).astype(np.float32)
    n, p, w = maps.shape
    config = sae.SaeConfig(latents=args.latents, k=args.k, seed=args.seed, epochs=args.epochs)
    print(f"{n} images x {p} positions, width {w}; {config}; torch threads {torch.get_num_threads()}\n")
    print("| implementation | train s | R^2 | mse | dead | always on |")
    print("|---|---|---|---|---|---|")
    for name in ("overcomplete 0.3.0 (vse)", "own torch"):
        t = time.perf_counter()
        if name.startswith("own"):
            weights = own_topk(torch.as_tensor(maps.reshape(n * p, w)), config)
        else:
            weights, _facts = sae.train(maps.reshape(n * p, w), config, progress=False)
        seconds = time.perf_counter() - t
        _pooled, freq, mse, r2 = sae.codes_of(maps, weights, config.k)
        dead, dense = int(np.sum(freq == 0)), int(np.sum(freq >= sae.ALWAYS_ON))
        print(f"| {name} | {seconds:.0f} | {r2:.3f} | {mse:.4f} | {dead} | {dense} |", flush=True)


if __name__ == "__main__":
    main()
