"""Activations of units on images: forward hooks, pooling, batched extraction to a compact .npz.

What "the activation of a unit on an image" means here:

* conv feature map ``[N, C, H, W]``: the **spatial mean** over H x W of channel C (``pooling="mean"``,
  the default, as CLIP-Dissect's ``avg`` mode and as the classifier's own global average pooling);
  ``pooling="max"`` takes the spatial maximum instead.
* ViT block output ``[N, T, D]`` (torchvision's ``encoder.layers.encoder_layer_K``, batch first):
  the **class token**, ``x[:, 0, :]``, whatever ``pooling`` says (the token the ViT head reads).
* a vector ``[N, D]``: itself.

The tensor a layer name refers to is documented by :meth:`vse.vision.models.LoadedModel.hook_point`
(usually the module's output; for EfficientNet-Lite's ``_conv_head`` the post-ReLU6 head map, read
as the input of ``_avg_pooling``). Pooling happens inside the hook so only ``[N, C]`` is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vse.atomic import write_atomic
from vse.errors import UserError

POOLINGS = ("mean", "max")
FLOAT16_MAX = 65504.0


def pool(t, pooling: str = "mean"):
    """Reduce one layer's output to ``[N, units]`` (see the module docstring)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if t.dim() == 4:
        return t.mean(dim=(2, 3)) if pooling == "mean" else t.amax(dim=(2, 3))
    if t.dim() == 3:
        return t[:, 0, :]
    if t.dim() == 2:
        return t
    raise ValueError(f"cannot pool a tensor of shape {tuple(t.shape)}: expected [N,C,H,W], [N,T,D] or [N,D]")


class LayerHooks:
    """Context manager: hooks on the given layers; each forward appends the pooled ``[N, units]`` tensor
    (or the raw tensor when ``pooling=None``) to ``self.outputs[layer]``."""

    def __init__(self, loaded, layers: Sequence[str], pooling: str | None = "mean"):
        self.loaded = loaded
        self.layers = list(layers)
        self.pooling = pooling
        self.points = {layer: loaded.hook_point(layer) for layer in self.layers}  # validates names
        self.outputs: dict[str, list] = {layer: [] for layer in self.layers}
        self._handles: list = []

    def _store(self, layer: str, t) -> None:
        t = t.detach()
        # The pooled rows stay on the model's device until the forward pass is over (`to_host`): a copy to the
        # host here would make the CPU wait for the GPU in the middle of the pass, once per hooked layer.
        self.outputs[layer].append(t if self.pooling is None else pool(t, self.pooling).float())

    def to_host(self) -> None:
        """Move the pooled tensors stored since the last call to the CPU: after a forward pass, one copy (one
        wait for the device) per batch for all layers together. Raw tensors (``pooling=None``) stay where the
        model put them."""
        if self.pooling is None:
            return
        import torch

        pending = []  # (layer, index) of the rows still on the device, oldest first per layer
        for layer, outs in self.outputs.items():
            i = len(outs)
            while i > 0 and outs[i - 1].device.type != "cpu":
                i -= 1
            pending += [(layer, j) for j in range(i, len(outs))]
        if not pending:
            return
        tensors = [self.outputs[layer][j] for layer, j in pending]
        host = torch.cat(tensors, dim=1).cpu() if len({t.shape[0] for t in tensors}) == 1 else None
        start = 0
        for (layer, j), t in zip(pending, tensors, strict=True):
            if host is None:  # rows of different batches: one copy each
                self.outputs[layer][j] = t.cpu()
                continue
            self.outputs[layer][j] = host[:, start : start + t.shape[1]]
            start += t.shape[1]

    def __enter__(self) -> LayerHooks:
        modules = dict(self.loaded.module.named_modules())
        for layer, point in self.points.items():
            m = modules[point.module]
            if point.kind == "input":
                h = m.register_forward_pre_hook(lambda _m, args, layer=layer: self._store(layer, args[0]))
            else:
                h = m.register_forward_hook(lambda _m, _a, out, layer=layer: self._store(layer, out))
            self._handles.append(h)
        return self

    def check_calls(self, n_forwards: int) -> None:
        """Raise if a hooked module ran more or less than once per forward pass (e.g. a shared
        activation module reused at many places): its 'output' would then be ambiguous."""
        for layer, outs in self.outputs.items():
            if len(outs) != n_forwards:
                raise ValueError(
                    f"layer {layer!r} ran {len(outs)} times in {n_forwards} forward pass(es) of {self.loaded.name}: "
                    "it is a shared module, so its output is ambiguous; pick a module that runs once"
                )

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextmanager
def full_fp32(device) -> Iterator[None]:
    """Convolutions and matrix products in full float32 on a CUDA ``device`` for the duration (TF32 off), then the
    previous settings back. PyTorch lets cuDNN use TF32 (a 10-bit mantissa) for float32 convolutions on Ampere and
    later GPUs by default: on an H200, EfficientNet-Lite0's ``_conv_head`` then differed from the CPU's by up to
    1.3% (0.7% of the values beyond 1e-3; tests/vision/test_activations.py::test_cuda_matches_cpu). vse's
    activations are meant to be the same numbers wherever they are computed, so they are float32 throughout."""
    import torch

    if torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def record_raw(loaded, layers: Sequence[str], x) -> dict[str, Any]:
    """One forward pass on the batch ``x``; the raw (unpooled) tensor of each layer."""
    import torch

    with torch.inference_mode(), LayerHooks(loaded, layers, pooling=None) as hooks:
        loaded.module(x)
        hooks.check_calls(1)
    return {layer: outs[0] for layer, outs in hooks.outputs.items()}


def activations_on_batch(loaded, layers: Sequence[str], x, pooling: str = "mean") -> dict[str, np.ndarray]:
    """Pooled activations ``{layer: float32 [N, units]}`` of one batch tensor."""
    import torch

    with torch.inference_mode(), full_fp32(x.device), LayerHooks(loaded, layers, pooling) as hooks:
        loaded.module(x)
        hooks.check_calls(1)
        hooks.to_host()
    return {layer: torch.cat(outs).numpy() for layer, outs in hooks.outputs.items()}


@dataclass
class ActivationResult:
    """Output of :func:`extract_activations`.

    ``activations``: layer -> float32 ``[n_images, n_units]`` in ``image_ids`` order;
    ``skipped``: ``{"id", "reason"}`` for every image that could not be read (never silently dropped).
    """

    model: str
    pooling: str
    image_ids: list[str]
    activations: dict[str, np.ndarray]
    hook_points: dict[str, str]
    skipped: list[dict] = field(default_factory=list)


class _ProbeTensors:
    """torch-style dataset over a probe set: (index, tensor or None, error or None)."""

    def __init__(self, probe, transform):
        self.probe, self.transform = probe, transform

    def __len__(self) -> int:
        return len(self.probe.items)

    def __getitem__(self, i):
        item = self.probe.items[i]
        try:
            return i, self.transform(self.probe.open(item)), None
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded, never fatal
            return i, None, f"{type(exc).__name__}: {exc}"


def _collate(batch):
    return batch


def resolve_device(device: str = "cpu"):
    """``torch.device`` for "cpu" / "cuda[:N]", with a clear error when CUDA is asked for but absent."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use cpu or cuda (cuda:N for a given GPU)") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported: use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU on this machine")
    return dev


def extract_activations(
    loaded,
    probe,
    layers: Sequence[str],
    *,
    batch_size: int = 32,
    pooling: str = "mean",
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> ActivationResult:
    """Pooled activations of ``layers`` on every readable image of ``probe`` (a
    :class:`vse.vision.datasets.ProbeSet`), in batches, with a tqdm bar on stderr.

    ``num_workers`` DataLoader processes decode and transform images while the model runs, so a
    GPU is not left waiting on PIL. ``device`` ("cpu", "cuda", "cuda:1", ...) is where the forward
    pass runs; the model is moved there (and stays), and the pooled ``[N, units]`` rows come back
    to the CPU after each batch's forward pass (`LayerHooks.to_host`), so only those small tensors cross the bus.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    dev = resolve_device(device)
    loaded.module.to(dev)
    # Pinned host memory lets the copy to the GPU overlap with the next batch's loading.
    loader = DataLoader(
        _ProbeTensors(probe, loaded.transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
    )
    ids: list[str] = []
    skipped: list[dict] = []
    n_forwards = 0
    with torch.inference_mode(), full_fp32(dev), LayerHooks(loaded, layers, pooling) as hooks:
        for batch in tqdm(loader, desc=f"activations {loaded.name}", unit="batch", disable=not progress):
            good = []
            for i, tensor, err in batch:
                if tensor is None:
                    skipped.append({"id": probe.items[i].id, "reason": err})
                else:
                    good.append((i, tensor))
            if not good:
                continue
            loaded.module(torch.stack([t for _, t in good]).to(dev, non_blocking=True))
            n_forwards += 1
            hooks.check_calls(n_forwards)
            hooks.to_host()
            ids.extend(probe.items[i].id for i, _ in good)
    acts = {
        layer: (torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32))
        for layer, outs in hooks.outputs.items()
    }
    return ActivationResult(
        loaded.name, pooling, ids, acts, {layer: p.doc for layer, p in hooks.points.items()}, skipped
    )


def save_activations(path: str | Path, result: ActivationResult, layer: str) -> Path:
    """Write one layer to a compressed .npz: ``activations`` float16 [n_images, n_units], ``image_ids``,
    ``pooling``, ``layer``, ``model``, ``hook`` (all plain numpy arrays: loads without pickle)."""
    a = result.activations[layer]
    if a.size and float(np.abs(a).max()) > FLOAT16_MAX:
        raise ValueError(f"activations of {layer} exceed the float16 range (max |a| = {np.abs(a).max():.4g})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        activations=a.astype(np.float16),
        image_ids=np.array(result.image_ids, dtype=str),
        pooling=np.array(result.pooling),
        layer=np.array(layer),
        model=np.array(result.model),
        hook=np.array(result.hook_points.get(layer, "")),
    )
    return path


def load_activations_npz(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`save_activations` (numpy only, ``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        return {
            "activations": z["activations"],
            "image_ids": [str(s) for s in z["image_ids"]],
            "pooling": str(z["pooling"]),
            "layer": str(z["layer"]),
            "model": str(z["model"]),
        }


def portable(path: str | Path) -> str:
    """A folder as a run record keeps it: relative to the current directory when inside it, else its
    name; never an absolute path (a user's home folder must not end up in a committed file)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return path.name


@dataclass
class ActivationRun:
    """One extraction over a probe set, as `vse activations` writes it (:meth:`write`).

    ``probe``: the :class:`vse.vision.datasets.ProbeSet`; ``spec``: how the user named it (``--probe``);
    ``result``: what :func:`extract_activations` returned."""

    model: str
    spec: str
    pooling: str
    probe: Any
    result: ActivationResult

    @property
    def skipped(self) -> list[dict]:
        """Images the probe set could not list and images the extraction could not read."""
        return list(self.probe.skipped) + list(self.result.skipped)

    def probe_json(self) -> list[dict]:
        """``[{"id", "caption"}]`` of the images read, in the activations' row order."""
        caps = {it.id: it.caption for it in self.probe.items}
        return [{"id": i, "caption": caps[i]} for i in self.result.image_ids]

    def record(self) -> dict:
        """The run record: the probe set's record, the model, pooling, images and hook points, and every
        skipped image, with the probe's root made portable (also inside the reasons, which quote paths)."""
        record = self.probe.record() | {
            "model": self.model,
            "pooling": self.pooling,
            "n_images": len(self.result.image_ids),
            "layers": self.result.hook_points,
        }
        record["root"] = portable(self.probe.root)
        skipped = self.skipped
        for absolute in {str(self.probe.root), str(Path(self.probe.root).resolve())}:
            skipped = [s | {"reason": str(s.get("reason", "")).replace(absolute, record["root"])} for s in skipped]
        record["skipped"] = skipped
        return record

    def write(self, out: str | Path) -> Path:
        """``activations_<layer>.npz`` per layer, ``probe.json`` and ``run_record.json`` under ``out``;
        a run that read no image is refused (a (0, units) array would only make `dissect` fail later)."""
        if not self.result.image_ids:
            raise UserError(f"no readable image in {self.spec}: {len(self.skipped)} skipped, nothing written")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for layer in self.result.activations:
            save_activations(out / f"activations_{layer}.npz", self.result, layer)
        write_atomic(out / "probe.json", json.dumps(self.probe_json(), indent=1, ensure_ascii=False) + "\n")
        write_atomic(out / "run_record.json", json.dumps(self.record(), indent=1, ensure_ascii=False) + "\n")
        return out


def extract_run(
    loaded,
    probe,
    spec: str,
    layers: Sequence[str],
    *,
    batch_size: int = 32,
    pooling: str = "mean",
    num_workers: int = 0,
    device: str = "cpu",
    model: str | None = None,
) -> ActivationRun:
    """:func:`extract_activations` of ``layers`` on ``probe`` (named ``spec`` by the user), as a run to write;
    ``model``: the name the record gives (default: the loaded model's)."""
    result = extract_activations(
        loaded, probe, layers, batch_size=batch_size, pooling=pooling, num_workers=num_workers, device=device
    )
    return ActivationRun(model or loaded.name, str(spec), pooling, probe, result)
