"""Sparse autoencoders (SAEs) on a layer's spatial positions, and the directions files of `vse.core.target.Feature`.

Training (`train_on_probe`, behind ``vse sae train``) runs the model over a probe set, keeps every spatial
position of the layer's map as one training vector (``[N, C, H, W]`` -> ``N * H * W`` vectors of width C; a
ViT block's tokens, or a vector layer's rows, likewise), and trains a top-k SAE on them with the kept library
`overcomplete` (its ``TopKSAE`` and ``train_sae``; see docs/sae.md for why it was chosen over our own): a
linear encoder, ReLU, the k largest codes kept, a dictionary of unit-norm atoms, ``x_hat = z @ D``.

What a latent's activation on an image means (how caption-activation pairs see it): the **spatial mean** of
the latent's code over the image's positions, as a channel's activation is the spatial mean of its map
(`vse.vision.activations`, ``pooling="mean"``). The top-k is taken per position, so the pooled codes cannot
be computed from pooled channels: the trained file keeps them for its own probe set (``probe_activations``),
and `probe_latents` computes them for another.

The file (``.npz``, no pickle, `SaeFile`): the encoder, its bias and the dictionary (float16: half the size,
and the kept probe activations are computed with the rounded weights, so they agree with `encode`), k, the
model and layer, per-latent firing frequency on the training positions, the probe set's ids, captions and
pooled codes, and the provenance (library and version, seed, dictionary size, k, epochs, probe set hash,
final loss and R², dead and always-on latents) as JSON.

Top-level imports are numpy and the standard library only: reading a file and computing pairs never needs
torch; training and `probe_latents` import torch (and `overcomplete`) inside themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vse.atomic import write_atomic

FORMAT = "vse-sae/1"
#: The library `train` uses (an optional extra: ``pip install 'vse[sae]'``), and the version it was measured with.
LIBRARY = "overcomplete"
#: A latent active on at least this share of the training positions is reported as always on.
ALWAYS_ON = 0.9
#: How a latent's map becomes one value per image: as channels are pooled (`vse.vision.activations`).
POOLING = "mean over the spatial positions of the latent's code (as a channel's map is pooled)"


class FeatureFileError(ValueError):
    """A directions or SAE file that cannot be a feature of the layer it is used with (one line)."""


@dataclass(frozen=True)
class SaeConfig:
    """How `train` trains: dictionary size, k of top-k, seed, epochs, batch size, learning rate, device."""

    latents: int = 1280
    k: int = 16
    seed: int = 0
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 1e-3
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.latents < 1 or not 1 <= self.k <= self.latents:
            raise ValueError(f"an SAE needs 1 <= k <= latents: k {self.k}, latents {self.latents}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs, batch size and learning rate must be positive")


@dataclass(frozen=True)
class SaeFile:
    """A trained top-k SAE of one layer, with what it was trained on (see the module docstring).

    center [width]: subtracted before encoding, added back to a reconstruction (``x_hat = z @ decoder + center``);
    encoder [latents, width], encoder_bias [latents], decoder [latents, width] (the dictionary's unit-norm atoms);
    frequency [latents]: the share of training positions where the latent is active; probe_ids, probe_captions,
    probe_activations [images, latents]: the pooled codes on the probe set it was trained on.
    """

    model: str
    layer: str
    k: int
    center: np.ndarray = field(repr=False)
    encoder: np.ndarray = field(repr=False)
    encoder_bias: np.ndarray = field(repr=False)
    decoder: np.ndarray = field(repr=False)
    frequency: np.ndarray = field(repr=False)
    probe_ids: tuple[str, ...] = field(repr=False)
    probe_captions: tuple[str, ...] = field(repr=False)
    probe_activations: np.ndarray = field(repr=False)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def latents(self) -> int:
        return int(self.decoder.shape[0])

    @property
    def width(self) -> int:
        return int(self.decoder.shape[1])

    @property
    def dead(self) -> list[int]:
        """Latents never active on a training position."""
        return [int(i) for i in np.flatnonzero(self.frequency == 0)]

    @property
    def always_on(self) -> list[int]:
        """Latents active on at least `ALWAYS_ON` of the training positions."""
        return [int(i) for i in np.flatnonzero(self.frequency >= ALWAYS_ON)]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            format=np.array(FORMAT),
            model=np.array(self.model),
            layer=np.array(self.layer),
            k=np.array(self.k),
            center=self.center.astype(np.float32),
            encoder=self.encoder.astype(np.float16),
            encoder_bias=self.encoder_bias.astype(np.float32),
            decoder=self.decoder.astype(np.float16),
            frequency=self.frequency.astype(np.float32),
            probe_ids=np.array(json.dumps(list(self.probe_ids), ensure_ascii=False)),
            probe_captions=np.array(json.dumps(list(self.probe_captions), ensure_ascii=False)),
            probe_activations=self.probe_activations.astype(np.float32),
            provenance=np.array(json.dumps(self.provenance, sort_keys=True, ensure_ascii=False)),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buf.getvalue())
        return path


def _finite(name: str, path: Path, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        raise FeatureFileError(f"{path}: {name} holds {int(np.sum(~np.isfinite(a)))} NaN or infinite value(s)")


def load_sae(path: str | Path) -> SaeFile:
    """Read a file `SaeFile.save` wrote; one-line `FeatureFileError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"SAE file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FeatureFileError(f"{path} is not an SAE file written by `vse sae train` (.npz): {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise FeatureFileError(f"{path} is not an SAE file written by `vse sae train` (one array, not an .npz)")
    with loaded as z:
        data = {k: z[k] for k in z.files}
    if "format" not in data or str(data["format"]) != FORMAT:
        raise FeatureFileError(f"{path} is not an SAE file written by `vse sae train` (no format {FORMAT!r})")
    sae = SaeFile(
        model=str(data["model"]),
        layer=str(data["layer"]),
        k=int(data["k"]),
        center=data["center"].astype(np.float32),
        encoder=data["encoder"].astype(np.float32),
        encoder_bias=data["encoder_bias"].astype(np.float32),
        decoder=data["decoder"].astype(np.float32),
        frequency=data["frequency"].astype(np.float64),
        probe_ids=tuple(json.loads(str(data["probe_ids"]))),
        probe_captions=tuple(json.loads(str(data["probe_captions"]))),
        probe_activations=data["probe_activations"].astype(np.float64),
        provenance=json.loads(str(data["provenance"])),
    )
    d, w = sae.decoder.shape
    shapes = {
        "center": (sae.center.shape, (w,)),
        "encoder": (sae.encoder.shape, (d, w)),
        "encoder_bias": (sae.encoder_bias.shape, (d,)),
        "frequency": (sae.frequency.shape, (d,)),
        "probe_activations": (sae.probe_activations.shape, (len(sae.probe_ids), d)),
    }
    for name, (got, want) in shapes.items():
        if got != want:
            raise FeatureFileError(f"{path}: {name} has shape {got}, expected {want} for {d} latents of width {w}")
    if len(sae.probe_captions) != len(sae.probe_ids):
        raise FeatureFileError(f"{path}: {len(sae.probe_captions)} captions for {len(sae.probe_ids)} probe images")
    for name in ("center", "encoder", "encoder_bias", "decoder", "probe_activations"):
        _finite(name, path, getattr(sae, name))
    return sae


def load_directions(path: str | Path, width: int | None = None) -> np.ndarray:
    """The directions of a ``.npy`` (numpy, no pickle) or ``.pt`` (a torch tensor) file: ``[n, width]`` float64
    (one vector ``[width]`` is one direction); one-line `FeatureFileError` for a wrong width, NaNs, a wrong
    shape or an unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"directions file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        elif suffix == ".pt":
            import torch

            raw = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(raw, torch.Tensor):
                raise FeatureFileError(f"{path} holds a {type(raw).__name__}, not a tensor of directions")
            raw = raw.detach().double().numpy()
        else:
            raise FeatureFileError(f"{path}: a directions file is .npy or .pt, not {suffix or 'without an extension'}")
    except FeatureFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader's failure is one line naming the file
        raise FeatureFileError(f"{path} cannot be read as directions: {type(exc).__name__}: {exc}") from None
    a = np.asarray(raw)
    if a.dtype.kind not in "fiu":
        raise FeatureFileError(f"{path} holds {a.dtype} values, not numbers")
    a = np.atleast_2d(a.astype(np.float64))
    if a.ndim != 2 or a.shape[0] == 0:
        raise FeatureFileError(f"{path} has shape {np.shape(raw)}: directions are [n, width] (or one [width])")
    if width is not None and a.shape[1] != width:
        raise FeatureFileError(f"{path}: directions of width {a.shape[1]}, but the layer has {width} channels")
    _finite("the directions", path, a)
    return a


def encode(x: np.ndarray, encoder: np.ndarray, bias: np.ndarray, k: int, *, center: np.ndarray) -> np.ndarray:
    """The SAE's codes of vectors ``x`` [n, width]: ReLU((x - center) W^T + b), the k largest of each row kept (the
    rest 0). For checks and tests; `train` and `probe_latents` compute the same in torch."""
    x = np.asarray(x, np.float64) - np.asarray(center, np.float64)
    pre = np.maximum(x @ np.asarray(encoder, np.float64).T + bias, 0.0)
    if k < pre.shape[1]:
        cut = np.argpartition(-pre, k - 1, axis=1)[:, k:]
        np.put_along_axis(pre, cut, 0.0, axis=1)
    return pre


# ----------------------------------------------------------------------------- from a probe set


def probe_hash(probe) -> str:
    """The probe set's content: each image's id and bytes, and its caption (sha256, 16 hex digits)."""
    h = hashlib.sha256()
    for item in probe.items:
        h.update(item.id.encode("utf-8") + b"\0" + (item.caption or "").encode("utf-8") + b"\0")
        h.update(hashlib.sha256(Path(item.path).read_bytes()).digest())
    return h.hexdigest()[:16]


def _positions(t):
    """``[N, C, H, W]`` -> ``[N, H*W, C]``; ``[N, T, D]`` stays; ``[N, D]`` -> ``[N, 1, D]``."""
    if t.dim() == 4:
        return t.flatten(2).transpose(1, 2)
    if t.dim() == 3:
        return t
    if t.dim() == 2:
        return t[:, None, :]
    raise ValueError(f"cannot take positions of a tensor of shape {tuple(t.shape)}")


def layer_positions(loaded, probe, layer: str, *, device: str = "cpu", batch_size: int = 32, progress: bool = True):
    """(image ids, float32 ``[images, positions, width]``): the layer's map at every spatial position of every
    readable probe image (`vse.vision.activations.LayerHooks` with no pooling), with a tqdm bar on stderr."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from vse.vision.activations import LayerHooks, _collate, _ProbeTensors, resolve_device

    dev = resolve_device(device)
    loaded.module.to(dev)
    loader = DataLoader(_ProbeTensors(probe, loaded.transform), batch_size=batch_size, collate_fn=_collate)
    ids: list[str] = []
    maps = []
    with torch.inference_mode(), LayerHooks(loaded, [layer], pooling=None) as hooks:
        for batch in tqdm(loader, desc=f"{loaded.name}/{layer} maps", unit="batch", disable=not progress):
            good = [(i, t) for i, t, err in batch if t is not None]
            if not good:
                continue
            loaded.module(torch.stack([t for _, t in good]).to(dev))
            maps.append(_positions(hooks.outputs[layer].pop()).float().cpu())
            ids.extend(probe.items[i].id for i, _ in good)
    if not ids:
        raise ValueError(f"no readable image in the probe set {probe.name}")
    return ids, torch.cat(maps).numpy()


def library_version() -> str:
    """The installed `LIBRARY`'s version; `ModuleNotFoundError` (one line: how to install it) when it is missing."""
    import importlib.metadata

    try:
        return importlib.metadata.version(LIBRARY)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"No module named '{LIBRARY}'", name=LIBRARY) from None


def check_device(device: str) -> None:
    """A device torch can use (`vse.vision.activations.resolve_device`), checked before any work."""
    from vse.vision.activations import resolve_device

    resolve_device(device)


def _overcomplete():
    """``overcomplete.sae`` and its version. Its package ``__init__`` imports plotting code (OpenCV,
    scikit-image, and ``matplotlib.cm.get_cmap``, gone since matplotlib 3.9, so 0.3.0 fails to import beside
    vse's matplotlib); the SAE code needs none of it: the subpackage is loaded under an empty parent."""
    import importlib
    import importlib.util
    import types

    version = library_version()
    if "overcomplete" not in sys.modules:
        spec = importlib.util.find_spec("overcomplete")
        parent = types.ModuleType("overcomplete")
        parent.__path__ = list(spec.submodule_search_locations)
        parent.__version__ = version
        sys.modules["overcomplete"] = parent
    return importlib.import_module("overcomplete.sae"), version


class _Batches:
    """The training batches, every epoch in a fresh order from one seeded torch generator, counted on one tqdm
    bar across all epochs (`overcomplete.sae.train_sae` iterates this once per epoch)."""

    def __init__(self, x, batch_size: int, generator, bar) -> None:
        self.x, self.batch_size, self.generator, self.bar = x, batch_size, generator, bar

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        import torch

        order = torch.randperm(len(self.x), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            yield self.x[order[start : start + self.batch_size]]
            self.bar.update(1)


def train(vectors: np.ndarray, config: SaeConfig, *, progress: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """A top-k SAE of ``vectors`` [n, width] trained with `overcomplete`: (weights: encoder, encoder_bias, decoder
    rounded to float16 as the file keeps them; facts: library version, final loss and R², the log per epoch)."""
    import torch
    from tqdm import tqdm

    sae_lib, version = _overcomplete()
    from vse.vision.activations import resolve_device

    dev = resolve_device(config.device)
    torch.manual_seed(config.seed)
    x = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32))
    # Centred vectors (the mean kept as ``center``, added back to a reconstruction): a post-ReLU map's large
    # shared mean would otherwise make the same latents win every position and leave most of them dead.
    center = x.mean(0)
    x = x - center
    model = sae_lib.TopKSAE(x.shape[1], nb_concepts=config.latents, top_k=config.k, device=str(dev))
    # The library's untied encoder started from its dictionary (encoder = D): every latent starts able to win.
    model.untied(bias=True, copy_from_dictionary=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)

    def loss_fn(x, x_hat, pre_codes, codes, dictionary):
        return (x - x_hat).square().mean()

    n_batches = math.ceil(len(x) / config.batch_size)
    with tqdm(total=config.epochs * n_batches, desc="sae train", unit="batch", disable=not progress) as bar:
        batches = _Batches(x.to(dev), config.batch_size, generator, bar)
        # train_sae prints one line per epoch on stdout: kept off it (stdout is the command's answer).
        with contextlib.redirect_stdout(sys.stderr if progress else io.StringIO()):
            logs = sae_lib.train_sae(model, batches, loss_fn, optimizer, nb_epochs=config.epochs, device=str(dev))
    model.eval()
    weights = {
        "center": center.numpy().astype(np.float32),
        "encoder": model.encoder.weight.detach().float().cpu().numpy().astype(np.float16),
        "encoder_bias": model.encoder.bias.detach().float().cpu().numpy(),
        "decoder": model.get_dictionary().detach().float().cpu().numpy().astype(np.float16),
    }
    facts = {
        "library": LIBRARY,
        "library_version": version,
        "torch_version": torch.__version__.split("+")[0],
        "loss_per_epoch": [round(float(v), 6) for v in logs.get("avg_loss", [])],
        "r2_per_epoch": [round(float(v), 6) for v in logs.get("r2", [])],
    }
    return weights, facts


def codes_of(maps: np.ndarray, weights: dict[str, np.ndarray], k: int, *, device: str = "cpu", chunk: int = 8192):
    """(pooled [images, latents]: each latent's code averaged over an image's positions; frequency [latents]: the
    share of positions where it is active; mse and R² of the reconstruction) of ``maps`` [images, positions,
    width] under the rounded weights (torch, in chunks)."""
    import torch

    from vse.vision.activations import resolve_device

    dev = resolve_device(device)
    n, p, w = maps.shape
    enc = torch.as_tensor(weights["encoder"].astype(np.float32), device=dev)
    bias = torch.as_tensor(weights["encoder_bias"].astype(np.float32), device=dev)
    dec = torch.as_tensor(weights["decoder"].astype(np.float32), device=dev)
    center = torch.as_tensor(weights["center"].astype(np.float32), device=dev)
    flat = torch.as_tensor(np.ascontiguousarray(maps.reshape(n * p, w), dtype=np.float32))
    sums = torch.zeros(n, enc.shape[0], dtype=torch.float64)
    active = torch.zeros(enc.shape[0], dtype=torch.float64)
    sq_err = 0.0
    with torch.inference_mode():
        for start in range(0, n * p, chunk):
            xb = flat[start : start + chunk].to(dev)
            pre = torch.relu((xb - center) @ enc.T + bias)
            top = torch.topk(pre, k, dim=1)
            z = torch.zeros_like(pre).scatter(1, top.indices, top.values)
            sq_err += float((xb - center - z @ dec).square().sum())
            active += (z > 0).double().sum(0).cpu()
            rows = torch.arange(start, start + len(xb)) // p
            sums.index_add_(0, rows, z.double().cpu())
    total_var = float(((flat - flat.mean(0)).double().square()).sum())
    return (sums / p).numpy(), (active / (n * p)).numpy(), sq_err / (n * p * w), 1.0 - sq_err / total_var


def probe_latents(loaded, probe, sae: SaeFile, *, device: str = "cpu", progress: bool = True):
    """(image ids, pooled codes [images, latents]) of ``sae``'s latents on another probe set."""
    ids, maps = layer_positions(loaded, probe, sae.layer, device=device, progress=progress)
    weights = {"center": sae.center, "encoder": sae.encoder, "encoder_bias": sae.encoder_bias, "decoder": sae.decoder}
    pooled, _freq, _mse, _r2 = codes_of(maps, weights, sae.k, device=device)
    return ids, pooled


def cached_positions(loaded, probe, layer: str, *, cache_dir: Path, device: str = "cpu", progress: bool = True):
    """`layer_positions` rounded to float16 and kept so under ``cache_dir`` (keyed by model, layer and
    `probe_hash`): a second training run on the same probe set starts at once, on the same numbers."""
    stem = Path(cache_dir) / f"{loaded.name}__{layer}__positions__{probe.name}-{probe_hash(probe)}"
    maps_path, ids_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if maps_path.exists() and ids_path.exists():
        return json.loads(ids_path.read_text(encoding="utf-8")), np.load(maps_path).astype(np.float32)
    ids, maps = layer_positions(loaded, probe, layer, device=device, progress=progress)
    maps = maps.astype(np.float16)  # what the cache keeps: a first run and a cached one train on the same numbers
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, maps)
    write_atomic(maps_path, buf.getvalue())
    write_atomic(ids_path, json.dumps(ids))
    return ids, maps.astype(np.float32)


def train_on_probe(
    loaded,
    probe,
    layer: str,
    config: SaeConfig,
    *,
    model: str | None = None,
    cache_dir: Path = Path(".vse-cache"),
    progress: bool = True,
) -> SaeFile:
    """`vse sae train`: the layer's positions on every captioned image of ``probe`` (`cached_positions`), a top-k
    SAE trained on them (`train`), its codes pooled per image, dead and always-on latents counted; returned as a
    file to save."""
    ids, maps = cached_positions(loaded, probe, layer, cache_dir=cache_dir, device=config.device, progress=progress)
    n, p, w = maps.shape
    weights, facts = train(maps.reshape(n * p, w), config, progress=progress)
    pooled, frequency, mse, r2 = codes_of(maps, weights, config.k, device=config.device)
    captions = {it.id: it.caption or "" for it in probe.items}
    sae = SaeFile(
        model=model or loaded.name,
        layer=layer,
        k=config.k,
        center=weights["center"],
        encoder=weights["encoder"],
        encoder_bias=weights["encoder_bias"],
        decoder=weights["decoder"],
        frequency=frequency,
        probe_ids=tuple(ids),
        probe_captions=tuple(captions[i] for i in ids),
        probe_activations=pooled,
        provenance={},
    )
    provenance = facts | {
        "model": sae.model,
        "layer": layer,
        "latents": config.latents,
        "k": config.k,
        "seed": config.seed,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "device": config.device,
        "probe": {"name": probe.name, "hash": probe_hash(probe), "images": n, "positions_per_image": p},
        "vectors": n * p,
        "mse": round(mse, 6),
        "r2": round(r2, 6),
        "dead": len(sae.dead),
        "always_on": len(sae.always_on),
        "always_on_threshold": ALWAYS_ON,
        "pooling": POOLING,
    }
    return SaeFile(**{**sae.__dict__, "provenance": provenance})
