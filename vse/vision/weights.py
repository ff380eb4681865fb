"""Weight-Label pairs (paper Section 3.2): the weights from a layer's units to the classes.

* Last hidden layer: the classifier's own weights, unit -> class.
* Earlier layers: the naive product of the weight matrices on the way to the output (eq. 1),
  ``W_est = W_t . W_{t-1} ... W_target``, ignoring the activation functions as the paper does.

Which layers the product is defined for
---------------------------------------
The modules that run after the layer (found by tracing one forward pass, in execution order) must
form a chain of per-unit linear maps:

* ``nn.Linear``;
* ``nn.Conv2d`` with a 1x1 kernel, ``groups=1`` and no padding: a linear map on channels
  (``weight[:, :, 0, 0]``), which commutes with the global average pooling that follows;
* ``BatchNorm1d/2d`` (eval statistics), folded in as the diagonal scale ``gamma / sqrt(var + eps)``
  (its shift goes to the bias, which Weight-Label pairs do not use);
* ``LayerNorm``: its elementwise ``gamma`` is folded in; the normalisation itself is ignored, like an
  activation (this is what makes ``encoder.layers.encoder_layer_11 -> encoder.ln -> heads.head`` of a
  ViT defined);
* ignored, as the paper ignores activations: ReLU/ReLU6/GELU/SiLU/Hardswish/Tanh/Sigmoid/LeakyReLU/
  ELU, Dropout, Identity, global average pooling (``AdaptiveAvgPool2d(1)``), ``Flatten``.

Anything else on the way (a k x k or depthwise convolution, max pooling, attention, a Linear that
reads a flattened spatial map, as AlexNet's ``classifier.1`` does) makes the product undefined, and
:func:`weights_to` refuses with an error naming the module. Skip connections written as plain
tensor additions inside a ``forward`` are invisible to the trace; every chain accepted above for
the registered models has none (EfficientNet-Lite: ``_blocks.15`` -> ``_conv_head`` -> ``_bn1`` ->
ReLU6 -> pooling -> ``_fc``; AlexNet: ``classifier.2``/``classifier.5`` -> Linear layers).

Signs: ``positive`` keeps the positive weights and zeroes the rest (the paper's default);
``negative`` flips the signs and keeps what was negative (App. C.3.1); ``both`` keeps the signed
weights (App. C.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vse.core.vocab import Polarity, choices

#: The signs a weight can be read with: the polarities (`vse.core.vocab.Polarity`).
SIGNS = choices(Polarity)

_IGNORED = {
    "ReLU",
    "ReLU6",
    "GELU",
    "SiLU",
    "Hardswish",
    "Hardsigmoid",
    "Tanh",
    "Sigmoid",
    "LeakyReLU",
    "ELU",
    "Mish",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "AlphaDropout",
    "Identity",
    "Flatten",
    "Softmax",
}


class ProductUndefined(ValueError):
    """The eq. 1 product is not defined from this layer (a non-linear-per-unit module is on the way)."""


@dataclass
class Step:
    """One module on the way from the layer to the target: what it contributed."""

    module: str
    type: str
    role: str  # "linear", "scale (folded)", "ignored"


@dataclass
class WeightMatrix:
    """``weights[unit, output]``: from each unit of ``layer`` to each unit of ``target`` (``"output"``:
    the classes). ``bias[output]``: the accumulated biases (not used by Weight-Label pairs)."""

    model: str
    layer: str
    target: str
    weights: np.ndarray
    bias: np.ndarray
    steps: list[Step] = field(default_factory=list)

    def describe(self) -> str:
        chain = " -> ".join(f"{s.module} [{s.type}: {s.role}]" for s in self.steps)
        return f"{self.model}: {self.layer} -> {chain} -> {self.target}"


def select_sign(w: np.ndarray, sign: str = Polarity.POSITIVE) -> np.ndarray:
    """``positive``: max(w, 0); ``negative``: max(-w, 0) (flipped); ``both``: w unchanged."""
    if sign == Polarity.POSITIVE:
        return np.maximum(w, 0)
    if sign == Polarity.NEGATIVE:
        return np.maximum(-w, 0)
    if sign == Polarity.BOTH:
        return np.asarray(w).copy()
    raise ValueError(f"unknown sign {sign!r}; choose one of {', '.join(SIGNS)}")


# -- tracing --------------------------------------------------------------------------------------
def trace_events(loaded) -> list[tuple[str, str, object]]:
    """Events ``(kind, module name, output)`` of one dummy forward pass, in order: ``("pre", name, None)``
    before and ``("post", name, output)`` after each module call (every module, leaf or not)."""

    events: list[tuple[str, str, object]] = []
    handles = []
    for name, m in loaded.module.named_modules():
        if not name:
            continue
        handles.append(m.register_forward_pre_hook(lambda _m, _a, n=name: events.append(("pre", n, None))))
        handles.append(m.register_forward_hook(lambda _m, _a, out, n=name: events.append(("post", n, out))))
    loaded.run_dummy(handles)
    return events


def _position(loaded, events, layer: str) -> int:
    point = loaded.hook_point(layer)
    key = ("pre" if point.kind == "input" else "post", point.module)
    hits = [i for i, (k, n, _) in enumerate(events) if (k, n) == key]
    if len(hits) != 1:
        raise ProductUndefined(
            f"layer {layer!r} runs {len(hits)} times in a forward pass of {loaded.name}; "
            "the product needs a layer that runs exactly once"
        )
    return hits[0]


def path_modules(loaded, layer: str, target: str | None = None) -> list[str]:
    """Leaf modules that run after ``layer`` and up to ``target`` (None: the model output), in order."""
    events = trace_events(loaded)
    start = _position(loaded, events, layer)
    end = _position(loaded, events, target) if target is not None else len(events) - 1
    if end <= start:
        if target is None:
            # e.g. efficientnet_lite0/_fc/3: the classifier's own units are the classes.
            raise ProductUndefined(
                f"layer {layer!r} is {loaded.name}'s output layer (its units are the classes): Weight-Label "
                f"pairs are for a hidden layer before it, e.g. the one the classifier reads"
            )
        raise ProductUndefined(f"target {target!r} does not come after layer {layer!r} in {loaded.name}")
    units = _units(loaded.module)
    return [n for k, n, _ in events[start + 1 : end + 1] if k == "post" and n in units]


def _units(module) -> set[str]:
    """Modules the product looks at: layers of a known type (even with children, e.g. a Conv2d
    subclass holding a padding module) and leaves; the descendants of such a unit are not units."""
    import torch.nn as nn

    known = (nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.MultiheadAttention)
    units: set[str] = set()
    for name, m in module.named_modules():
        if not name or any(name.startswith(u + ".") for u in units):
            continue
        if isinstance(m, known) or not any(True for _ in m.children()):
            units.add(name)
    return units


def _affine(name: str, m, width: int) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """(A [out, in], c [out], role) of one module, or (None, None, "ignored")."""
    import torch.nn as nn

    t = type(m).__name__
    if t in _IGNORED:
        return None, None, "ignored"
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)):
        size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,)
        if all(s in (1, None) for s in size):
            return None, None, "ignored"
        raise ProductUndefined(
            f"{name} ({t}, output size {m.output_size}) keeps a spatial map: "
            "the product is only defined through global pooling"
        )
    if isinstance(m, nn.Linear):
        W = m.weight.detach().double().numpy()
        b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(W.shape[0])
        if W.shape[1] != width:
            raise ProductUndefined(
                f"{name} (Linear) reads {W.shape[1]} features but the chain has {width} units "
                "here (a flattened spatial map?): the product is not defined per unit"
            )
        return W, b, "linear"
    if isinstance(m, nn.Conv2d):
        padded = not isinstance(m.padding, str) and any(p != 0 for p in m.padding)
        if m.kernel_size != (1, 1) or m.groups != 1 or padded:
            raise ProductUndefined(
                f"{name} is a {m.kernel_size[0]}x{m.kernel_size[1]} convolution "
                f"(groups={m.groups}, padding={m.padding}): "
                "only 1x1 convolutions with groups=1 and no padding are linear maps on channels"
            )
        W = m.weight.detach().double().numpy()[:, :, 0, 0]
        b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(W.shape[0])
        return W, b, "linear"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if m.running_var is None:
            raise ProductUndefined(f"{name} ({t}) has no running statistics to fold")
        var = m.running_var.detach().double().numpy()
        mean = m.running_mean.detach().double().numpy()
        gamma = m.weight.detach().double().numpy() if m.affine else np.ones_like(var)
        beta = m.bias.detach().double().numpy() if m.affine else np.zeros_like(var)
        s = gamma / np.sqrt(var + m.eps)
        return np.diag(s), beta - mean * s, "scale (folded)"
    if isinstance(m, nn.LayerNorm):
        gamma = m.weight.detach().double().numpy().ravel() if m.weight is not None else np.ones(width)
        beta = m.bias.detach().double().numpy().ravel() if m.bias is not None else np.zeros(width)
        return np.diag(gamma), beta, "scale (folded, normalisation ignored)"
    raise ProductUndefined(
        f"{name} ({t}) is not a per-unit linear map: the eq. 1 product is only defined through Linear, 1x1 Conv2d, "
        "BatchNorm, LayerNorm (gamma), elementwise activations, dropout, global average pooling and flatten"
    )


def weights_to(loaded, layer: str, target: str | None = None) -> WeightMatrix:
    """Weights from each unit of ``layer`` to each unit of ``target`` (None: the classes): the
    classifier's weights for the last hidden layer, the eq. 1 product (BN folded) for earlier ones."""
    names = path_modules(loaded, layer, target)
    modules = dict(loaded.module.named_modules())
    width = loaded.layer_width(layer)
    W = np.eye(width)
    b = np.zeros(width)
    steps = []
    for name in names:
        A, c, role = _affine(name, modules[name], W.shape[0])
        steps.append(Step(name, type(modules[name]).__name__, role))
        if A is None:
            continue
        if A.shape[1] != W.shape[0]:
            raise ProductUndefined(f"{name} expects {A.shape[1]} inputs but the chain has {W.shape[0]} units here")
        W = A @ W
        b = A @ b + c
    if not any(s.role != "ignored" for s in steps):
        raise ProductUndefined(f"no weights between {layer!r} and {target or 'the output'!r} in {loaded.name}")
    return WeightMatrix(loaded.name, layer, target or "output", W.T.astype(np.float32), b.astype(np.float32), steps)


def weight_label_pairs(
    matrix: WeightMatrix, unit: int, labels: list[str], sign: str = Polarity.POSITIVE
) -> list[tuple[str, float]]:
    """``(label, weight)`` for one unit, in label order, after :func:`select_sign`."""
    n_units, n_out = matrix.weights.shape
    if not 0 <= unit < n_units:
        raise IndexError(f"unit {unit} out of range for {matrix.model}/{matrix.layer}: the layer has {n_units} units")
    if len(labels) != n_out:
        raise ValueError(f"{len(labels)} labels for {n_out} outputs of {matrix.target}")
    w = select_sign(matrix.weights[unit], sign)
    return [(lab, float(v)) for lab, v in zip(labels, w, strict=True)]


def save_weight_matrix(path, matrix: WeightMatrix) -> None:
    """Compressed .npz: ``weights`` float32 [units, outputs] (raw, signed), ``layer``, ``model``,
    ``target``, ``chain`` (string arrays; loads without pickle)."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        weights=matrix.weights.astype(np.float32),
        layer=np.array(matrix.layer),
        model=np.array(matrix.model),
        target=np.array(matrix.target),
        chain=np.array(matrix.describe()),
    )
