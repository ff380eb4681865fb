"""The small data files the experiments start from (``fixtures/``): loaders (numpy only) and the builder.

Loaders (no torch, no pickle; ``root`` defaults to the repository's ``fixtures/`` folder, or
``$VSE_FIXTURES`` when set):

* :func:`load_class_names` ``(model="efficientnet_lite0", root=None) -> list[str]``
* :func:`load_weight_label` ``(layer, model="efficientnet_lite0", root=None)
  -> (weights [units, 1000] float32, class_names)``
* :func:`load_weight_clip` ``(layer="_blocks.15", model="efficientnet_lite0", root=None)
  -> (weights [units, next_units] float32, labels)``
* :func:`load_probe` ``(probe="tuxpaint", root=None) -> list[{"id", "caption"}]``
* :func:`load_activations` ``(layer, probe="tuxpaint", root=None)
  -> (activations [n_images, units] float32, image_ids)``
* :func:`load_dissect` ``(layer="_conv_head", probe="tuxpaint", root=None) -> list[{"unit", "label", "score"}]``
* :func:`load_run_record` ``(probe="tuxpaint", root=None) -> dict``
* :func:`load_thumbnail` ``(i, probe="tuxpaint", root=None) -> PIL.Image`` (RGB, THUMB_SIZE square) and
  :func:`load_thumbnails` ``(probe="tuxpaint", root=None) -> list[PIL.Image]``: probe image ``i`` (probe.json
  / activation row order) as the model saw it, shrunk; read from the atlas ``thumbnails.png`` (PIL only)

:func:`build_fixtures` regenerates everything from the real stamps and model (``vse fixtures``). The
builders import the rest of vse.vision (and PIL, tqdm) inside themselves: this module's top imports are
stdlib and numpy only, so the loaders stay importable without them (tested).
"""

from __future__ import annotations

import io
import json
import os
from functools import lru_cache
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
    from vse.paths import data_root  # the checkout's fixtures/, also after a non-editable install

    return data_root() / "fixtures"


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


# The thumbnails atlas: every probe image, in probe.json order, as a THUMB_SIZE square tile, row-major,
# THUMB_COLUMNS tiles a row (700 images -> 28 x 25 tiles, 1344 x 1200 px). Tiles after the last image are white.
THUMB_SIZE = 48
THUMB_COLUMNS = 28
THUMBNAILS_FILE = "thumbnails.png"
# What the model saw (vse.vision.models: resize the padded square to 256, centre-crop 224), then shrunk.
_MODEL_RESIZE, _MODEL_CROP = 256, 224


@lru_cache(maxsize=4)
def _atlas(path: str, mtime_ns: int):
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


def _thumbnail_atlas(probe: str, root):
    path = _file(root, probe, THUMBNAILS_FILE)
    atlas = _atlas(str(path), path.stat().st_mtime_ns)
    n = len(load_probe(probe, root))
    rows = -(-n // THUMB_COLUMNS)
    want = (THUMB_COLUMNS * THUMB_SIZE, rows * THUMB_SIZE)
    if atlas.size != want:
        raise ValueError(
            f"{path}: {atlas.size[0]}x{atlas.size[1]} px, expected {want[0]}x{want[1]} for {n} probe images "
            f"as {THUMB_SIZE} px tiles, {THUMB_COLUMNS} a row; regenerate with `vse fixtures`"
        )
    return atlas, n


def _tile(atlas, i: int):
    x, y = (i % THUMB_COLUMNS) * THUMB_SIZE, (i // THUMB_COLUMNS) * THUMB_SIZE
    return atlas.crop((x, y, x + THUMB_SIZE, y + THUMB_SIZE))


def load_thumbnail(i: int, probe: str = DEFAULT_PROBE, root=None):
    """Probe image ``i`` (row ``i`` of the activations) as an RGB PIL image, ``THUMB_SIZE`` px square."""
    atlas, n = _thumbnail_atlas(probe, root)
    i = int(i)
    if not 0 <= i < n:
        raise IndexError(f"thumbnail {i} out of range: the {probe} probe set has {n} images")
    return _tile(atlas, i)


def load_thumbnails(probe: str = DEFAULT_PROBE, root=None) -> list:
    """Every probe image's thumbnail, in probe.json (activation row) order."""
    atlas, n = _thumbnail_atlas(probe, root)
    return [_tile(atlas, i) for i in range(n)]


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


def build_probe_fixtures(
    loaded, out: Path, *, include_svg: bool = True, batch_size: int = 32, progress: bool = True
) -> dict:
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


def thumbnail(img):
    """A decoded probe image (RGB, padded square) as the model saw it, shrunk to ``THUMB_SIZE``: resized
    to 256 and centre-cropped to 224 as in `vse.vision.models`, then shrunk with Lanczos (PIL only)."""
    from PIL import Image

    w, h = img.size
    scale = _MODEL_RESIZE / min(w, h)
    img = img.resize(
        (max(_MODEL_RESIZE, round(w * scale)), max(_MODEL_RESIZE, round(h * scale))), Image.Resampling.BILINEAR
    )
    left, top = (img.width - _MODEL_CROP) // 2, (img.height - _MODEL_CROP) // 2
    img = img.crop((left, top, left + _MODEL_CROP, top + _MODEL_CROP))
    return img.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)


def build_thumbnails(out: Path, *, stamps: Path | None = None, progress: bool = True) -> Path:
    """``<probe>/thumbnails.png``: every image of probe.json (already built in ``out``), decoded exactly as
    for the activations (`vse.vision.datasets.tuxpaint` settings: white background, padded square,
    SVG at 512 px), shrunk by :func:`thumbnail`, tiled row-major. Deterministic bytes for a given
    Pillow and cairosvg: no metadata, fixed zlib settings."""
    from PIL import Image
    from tqdm import tqdm

    from vse.vision.datasets import TUXPAINT_ROOT, open_image, tuxpaint

    out = fixtures_root(out)
    probe = load_probe(root=out)
    settings = tuxpaint(stamps or TUXPAINT_ROOT, include_svg=True)  # the same decoding settings and root
    rows = -(-len(probe) // THUMB_COLUMNS)
    atlas = Image.new("RGB", (THUMB_COLUMNS * THUMB_SIZE, rows * THUMB_SIZE), (255, 255, 255))
    for i, item in enumerate(tqdm(probe, desc="thumbnails", unit="img", disable=not progress)):
        img = open_image(settings.root / item["id"], settings.background, settings.pad_square, settings.svg_size)
        atlas.paste(thumbnail(img), ((i % THUMB_COLUMNS) * THUMB_SIZE, (i // THUMB_COLUMNS) * THUMB_SIZE))
    path = out / DEFAULT_PROBE / THUMBNAILS_FILE
    buf = io.BytesIO()
    atlas.save(buf, format="PNG", optimize=True)  # PIL writes no text chunks, no time unless asked
    path.write_bytes(buf.getvalue())
    return path


FIXTURE_TOP_K = 10  # soft-WPMI top_k for the 700-image probe set (the official 100 is for 50k images)


# Hidden layers given CLIP-Dissect labels: `_conv_head` names the weight_clip targets; `_blocks.15`
# (the second-last layer) is labelled too, so methods can be compared with CLIP-Dissect there as well.
DISSECT_LAYERS = ("_conv_head", "_blocks.15")


def _write_dissect_layer(d: Path, layer: str, similarity: np.ndarray, words, params, out: Path) -> Path:
    from vse.vision import dissect as D

    acts, ids = load_activations(layer, root=out)
    labels, _ = D.dissect(similarity, acts, words, params)
    path = d / f"dissect_{_layer_file(layer)}.json"
    _write_json(
        path,
        {
            "model": DEFAULT_MODEL,
            "layer": layer,
            "probe": DEFAULT_PROBE,
            "n_images": len(ids),
            "backend": D.TEXT_BACKEND,
            "concept_set": {"name": "wordfreq: 20000 most frequent alphabetic English words", "size": len(words)},
            "params": params.__dict__,
            "units": [{"unit": u.unit, "label": u.label, "score": round(u.score, 4)} for u in labels],
        },
    )
    return path


def build_dissect_fixtures(
    out: Path,
    *,
    top_k: int = FIXTURE_TOP_K,
    sweep=(5, 10, 20, 50, 100),
    layers=DISSECT_LAYERS,
    validate: bool = True,
    progress: bool = True,
) -> dict:
    """dissect_<layer>.json for each of ``layers`` (text backend, wordfreq 20k concepts) and the
    output-layer validation (dissect__fc_validation.json), from the activation fixtures: no model
    forward pass needed."""
    from vse.vision import dissect as D

    probe = load_probe(root=out)
    captions = [p["caption"] for p in probe]
    classes = load_class_names(root=out)
    words = D.wordfreq_concepts(20000)
    encoder = D.load_text_encoder()
    cap = D.embed_texts(encoder, captions, progress=progress)
    cls = D.embed_texts(encoder, classes, progress=progress)
    wrd = D.embed_texts(encoder, words, progress=progress)
    d = out / DEFAULT_PROBE
    params = D.SoftWPMIParams(top_k=top_k)

    # hidden layers: the 20k most frequent English words, as CLIP-Dissect
    for layer in layers:
        _write_dissect_layer(d, layer, cap @ wrd.T, words, params, out)
    if not validate:
        return {}

    # validation on the output layer, whose units are the classes
    fc, ids = load_activations("_fc", root=out)
    plausible = sorted(set((cap @ cls.T).argmax(axis=1).tolist()))
    lowered = [c.lower() for c in captions]
    literal = [i for i, c in enumerate(classes) if any(c.lower() in cap_ for cap_ in lowered)]
    merged = D.merge_concepts(classes, words)
    word_index = {w: i for i, w in enumerate(words)}
    merged_emb = np.concatenate([cls, wrd[[word_index[w] for w in merged[len(classes) :]]]])
    results = {}
    for name, concepts, emb in (("class_names", classes, cls), ("class_names+wordfreq20k", merged, merged_emb)):
        sim = cap @ emb.T
        for k in sweep:
            scores = D.soft_wpmi(sim, fc, D.SoftWPMIParams(top_k=k))
            results.setdefault(name, {})[str(k)] = {
                subset: {
                    f"top{n}": round(v, 4) for n, v in D.topk_agreement(scores, concepts, classes, units=units).items()
                }
                for subset, units in (("all_1000", None), ("plausible", plausible), ("literal", literal))
            }
    record = {
        "layer": "_fc (logits; unit i is class i)",
        "backend": D.TEXT_BACKEND,
        "n_images": len(ids),
        "subsets": {
            "all_1000": "every class unit",
            "plausible": f"{len(plausible)} classes that are the nearest class name (MiniLM) of at least one caption",
            "literal": f"{len(literal)} classes whose name occurs literally (case-insensitive) in at least one caption",
        },
        "agreement": "fraction of class units whose own class name is the top-1 / among the top-5 concepts",
        "fixture_top_k": top_k,
        "results_by_concept_set_and_top_k": results,
    }
    _write_json(d / "dissect__fc_validation.json", record)
    return record


def build_weight_clip_fixtures(loaded, out: Path) -> list[Path]:
    """weight_clip_<layer>.npz: weights from each unit of the layer to each unit of the next layer
    (:data:`WEIGHT_CLIP`), with the next layer's CLIP-Dissect labels."""
    from vse.vision.weights import weights_to

    paths = []
    for layer, target in WEIGHT_CLIP.items():
        m = weights_to(loaded, layer, target)
        labels = [u["label"] for u in load_dissect(target, root=out)]
        if len(labels) != m.weights.shape[1]:
            raise ValueError(f"{len(labels)} dissect labels for {m.weights.shape[1]} units of {target}")
        p = out / loaded.name / f"weight_clip_{_layer_file(layer)}.npz"
        np.savez_compressed(
            p,
            weights=m.weights.astype(np.float32),
            labels=np.array(labels, dtype=str),
            layer=np.array(layer),
            target=np.array(target),
            model=np.array(loaded.name),
            chain=np.array(m.describe()),
            label_source=np.array(f"dissect_{target}.json"),
        )
        paths.append(p)
    return paths


def build_fixtures(
    out: str | Path | None = None,
    *,
    include_svg: bool = True,
    batch_size: int = 32,
    steps=("weights", "probe", "dissect", "weight_clip", "thumbnails"),
    progress: bool = True,
) -> None:
    """Regenerate fixtures/ from the real Tux Paint stamps and EfficientNet-Lite0 (see fixtures/README.md)."""
    from vse.vision.models import load_model

    out = fixtures_root(out)
    loaded = load_model(DEFAULT_MODEL) if {"weights", "probe", "weight_clip"} & set(steps) else None
    if "weights" in steps:
        build_weight_fixtures(loaded, out)
    if "probe" in steps:
        build_probe_fixtures(loaded, out, include_svg=include_svg, batch_size=batch_size, progress=progress)
    if "dissect" in steps:
        build_dissect_fixtures(out, progress=progress)
    if "weight_clip" in steps:
        build_weight_clip_fixtures(loaded, out)
    if "thumbnails" in steps:
        build_thumbnails(out, progress=progress)
