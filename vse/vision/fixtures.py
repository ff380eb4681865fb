"""The small data files the experiments start from (``fixtures/``): loaders (numpy only) and the builder.

Loaders (no torch, no pickle; ``root`` defaults to the repository's ``fixtures/`` folder, or
``$VSE_FIXTURES`` when set):

* :func:`load_class_names` ``(model="efficientnet_lite0", root=None) -> list[str]``
* :func:`load_weight_label` ``(layer, model="efficientnet_lite0", root=None) -> (weights [units, 1000] float32, class_names)``
* :func:`load_weight_clip` ``(layer="_blocks.15", model="efficientnet_lite0", root=None) -> (weights [units, next_units] float32, labels)``
* :func:`load_probe` ``(probe="tuxpaint", root=None) -> list[{"id", "caption"}]``
* :func:`load_activations` ``(layer, probe="tuxpaint", root=None) -> (activations [n_images, units] float32, image_ids)``
* :func:`load_dissect` ``(layer="_conv_head", probe="tuxpaint", root=None) -> list[{"unit", "label", "score"}]``
* :func:`load_run_record` ``(probe="tuxpaint", root=None) -> dict``

:func:`build_fixtures` regenerates everything from the real stamps and model (``vse fixtures``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_PROBE = "tuxpaint"
# The layers the experiments use; `_fc` (the output layer) only for validating CLIP-Dissect.
ACTIVATION_LAYERS = ("_conv_head", "_blocks.15", "_fc")
WEIGHT_LABEL_LAYERS = ("_conv_head", "_blocks.15")
WEIGHT_CLIP = {"_blocks.15": "_conv_head"}  # layer -> the next layer whose dissect labels name the weights


def fixtures_root(root: str | Path | None = None) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get("VSE_FIXTURES"):
        return Path(os.environ["VSE_FIXTURES"])
    return Path(__file__).resolve().parents[2] / "fixtures"


def _file(root, *parts: str) -> Path:
    path = fixtures_root(root).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"fixture {path} is missing; regenerate fixtures with `make fixtures` (vse fixtures)")
    return path


def _layer_file(layer: str) -> str:
    # `_conv_head` -> `_conv_head`; `_blocks.15` -> `_blocks.15`; the prefix's `_` plus the layer's leading `_`
    # gives names such as weight_label__conv_head.npz.
    return layer


def _npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# -- loaders ------------------------------------------------------------------------------------
def load_class_names(model: str = DEFAULT_MODEL, root=None) -> list[str]:
    return json.loads(_file(root, model, "class_names.json").read_text(encoding="utf-8"))


def load_weight_label(layer: str, model: str = DEFAULT_MODEL, root=None) -> tuple[np.ndarray, list[str]]:
    """Raw signed weights ``[units, classes]`` from ``layer`` to the classes, and the class names."""
    z = _npz(_file(root, model, f"weight_label_{_layer_file(layer)}.npz"))
    return z["weights"].astype(np.float32), load_class_names(model, root)


def load_weight_clip(layer: str = "_blocks.15", model: str = DEFAULT_MODEL, root=None) -> tuple[np.ndarray, list[str]]:
    """Raw signed weights ``[units, next_units]`` and the next layer's CLIP-Dissect labels."""
    z = _npz(_file(root, model, f"weight_clip_{_layer_file(layer)}.npz"))
    return z["weights"].astype(np.float32), [str(s) for s in z["labels"]]


def load_probe(probe: str = DEFAULT_PROBE, root=None) -> list[dict]:
    return json.loads(_file(root, probe, "probe.json").read_text(encoding="utf-8"))


def load_activations(layer: str, probe: str = DEFAULT_PROBE, root=None) -> tuple[np.ndarray, list[str]]:
    """Activations ``[n_images, units]`` (stored float16, returned float32) and the image ids (probe.json order)."""
    z = _npz(_file(root, probe, f"activations_{_layer_file(layer)}.npz"))
    return z["activations"].astype(np.float32), [str(s) for s in z["image_ids"]]


def load_dissect(layer: str = "_conv_head", probe: str = DEFAULT_PROBE, root=None) -> list[dict]:
    data = json.loads(_file(root, probe, f"dissect_{_layer_file(layer)}.json").read_text(encoding="utf-8"))
    return data["units"]


def load_run_record(probe: str = DEFAULT_PROBE, root=None) -> dict:
    return json.loads(_file(root, probe, "run_record.json").read_text(encoding="utf-8"))


# -- builder ------------------------------------------------------------------------------------
def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def build_weight_fixtures(loaded, out: Path) -> list[Path]:
    """class_names.json and weight_label_<layer>.npz for :data:`WEIGHT_LABEL_LAYERS`."""
    from vse.vision.weights import save_weight_matrix, weights_to

    d = out / loaded.name
    _write_json(d / "class_names.json", loaded.class_names)
    paths = [d / "class_names.json"]
    for layer in WEIGHT_LABEL_LAYERS:
        p = d / f"weight_label_{_layer_file(layer)}.npz"
        save_weight_matrix(p, weights_to(loaded, layer))
        paths.append(p)
    return paths


def build_probe_fixtures(loaded, out: Path, *, include_svg: bool = True, batch_size: int = 32,
                         progress: bool = True) -> dict:
    """probe.json, activations_<layer>.npz and run_record.json for the Tux Paint stamps."""
    from vse.vision.activations import extract_activations, save_activations
    from vse.vision.datasets import tuxpaint

    probe = tuxpaint(include_svg=include_svg).only_captioned().verify(progress=progress)
    result = extract_activations(loaded, probe, ACTIVATION_LAYERS, batch_size=batch_size, progress=progress)
    d = out / DEFAULT_PROBE
    captions = {it.id: it.caption for it in probe.items}
    _write_json(d / "probe.json", [{"id": i, "caption": captions[i]} for i in result.image_ids])
    for layer in ACTIVATION_LAYERS:
        save_activations(d / f"activations_{_layer_file(layer)}.npz", result, layer)
    record = probe.record()
    record["skipped"] = record["skipped"] + result.skipped
    record.update(
        n_images=len(result.image_ids),
        model=loaded.name,
        pooling=result.pooling,
        layers={layer: result.hook_points[layer] for layer in ACTIVATION_LAYERS},
        include_svg=include_svg,
        n_svg=sum(1 for i in result.image_ids if i.endswith(".svg")),
    )
    record.pop("uncaptioned", None)
    _write_json(d / "run_record.json", record)
    return record
