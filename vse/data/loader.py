"""One loader for a neuron's pairs: (neuron id, pair kind, polarity) -> `Target`.

Kinds:
- ``weight-label``: weights to the classes (last hidden layer directly, deeper layers by the eq. 1
  product), class names as texts.
- ``weight-clip``: weights to the next layer's units, named by their CLIP-Dissect labels.
- ``weight-explanation``: the same weights, the next layer's units named by vse's own
  explanations (only the units that have one).
- ``caption-activation``: activations on the probe images, their captions as texts.

A unit may be a feature of the layer instead of a channel (`vse.core.target.Feature`, ids
``MODEL/LAYER/sae:FILE/INDEX`` and ``MODEL/LAYER/dir:FILE/INDEX``, see docs/sae.md), with the same two
kinds a probe folder gives:
- a **direction** d (a row of a ``.npy``/``.pt`` file): weight-label = d . W (W: the layer's weights to the
  classes, the eq. 1 product for an earlier layer, so a direction's weights are its channels' weights
  mixed as it mixes them); caption-activation = d . a(image), a the channels' pooled activations, which is
  the spatial mean of d's own map (the mean is linear);
- a **latent** j of an SAE file (`vse.vision.sae`): weight-label = D_j . W, its dictionary atom's weights (a
  latent adds z_j D_j to the layer); caption-activation = the spatial mean of its code, as the file keeps it
  for the probe set it was trained on (no ``--probe``), or computed through the model for ``--probe DIR``.
Every product is an exact dot (`vse.core.exact.dots`): the same bits on every machine.

Data come from the committed fixtures (numpy only, no model), or, with a `Source` naming a probe
folder, from any registered model computed through `vse.vision` and cached on disk under a key
of (model, layer, kind, probe set), so a second run starts at once. Each matrix is read once per
process (`functools.lru_cache`), however many neurons or targets a run loads.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from vse.atomic import write_atomic
from vse.core import exact
from vse.core.seeds import rng
from vse.core.target import Feature, Target, parse_neuron_id, split_layer
from vse.core.vocab import FeatureKind, Kind, Polarity
from vse.errors import UserError
from vse.paths import data_root
from vse.vision import activations, datasets, fixtures, models, sae, weights


@dataclass(frozen=True)
class Source:
    """Where a neuron's pairs come from.

    probe: a folder of images with captions (sidecar ``<stem>.txt``, ``captions.tsv`` or
        ``captions.json``); None = the committed fixtures.
    cache_dir: where computed matrices are kept (key: model, layer, kind, probe set).
    device: where the forward pass runs when activations are computed ("cpu", "cuda", "cuda:1").
    """

    probe: Path | None = None
    cache_dir: Path = Path(".vse-cache")
    device: str = "cpu"


FIXTURES = Source()


def _probe_key(probe: Path) -> str:
    """The probe set's identity: its files' relative paths, sizes and mtimes (not its location)."""
    files = sorted(p for p in probe.rglob("*") if p.is_file())
    blob = "\n".join(f"{p.relative_to(probe).as_posix()}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _live_matrix(
    model: str, layer: str, kind: str, probe: Path, cache_dir: Path, device: str = "cpu"
) -> tuple[tuple[str, ...], np.ndarray]:
    """(texts, raw [units, items]) computed from a live model, cached on disk."""
    texts, raw, _ids = live_pairs(model, layer, kind, probe, cache_dir, device)
    return texts, raw


@cache
def live_pairs(
    model: str, layer: str, kind: str, probe: Path, cache_dir: Path, device: str = "cpu"
) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...] | None]:
    """(texts, raw [units, items], image ids) computed from a live model, cached on disk.

    The image ids (paths relative to the probe folder, in item order) let a page show the images
    behind the values; weight-label pairs have none. A cache written before ids were kept is
    recomputed once."""
    if kind not in (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION):
        raise ValueError(
            f"{kind} pairs need the next layer's labels (CLIP-Dissect or explanations): "
            "with --probe only weight-label and caption-activation are computed"
        )
    key = f"{model}__{layer}__{kind}"  # the layer's cache (preflight globs these names)
    if kind == Kind.CAPTION_ACTIVATION:
        key += f"__{probe.name}-{_probe_key(probe)}"
    path = cache_dir / f"{key}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        ids = tuple(json.loads(str(data["ids"]))) if "ids" in data.files else None
        if kind == Kind.WEIGHT_LABEL or ids is not None:
            return tuple(json.loads(str(data["texts"]))), np.asarray(data["raw"], dtype=np.float64), ids
    loaded = models.load_model(model)
    if kind == Kind.WEIGHT_LABEL:
        raw = np.asarray(weights.weights_to(loaded, layer).weights, dtype=np.float64)
        texts, ids = tuple(loaded.class_names), None
    else:
        probe_set = datasets.load_folder(probe)
        missing = [it.id for it in probe_set.items if not it.caption]
        if missing:
            raise ValueError(
                f"{len(missing)} images of {probe} have no caption (first: {missing[0]}): "
                "add <stem>.txt sidecars or a captions.tsv"
            )
        result = activations.extract_activations(loaded, probe_set, [layer], device=device)
        captions = {it.id: it.caption for it in probe_set.items}
        ids = tuple(result.image_ids)
        texts = tuple(captions[i] for i in ids)
        raw = np.asarray(result.activations[layer], dtype=np.float64).T
    cache_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    extra = {} if ids is None else {"ids": np.array(json.dumps(list(ids)))}
    np.savez_compressed(buf, texts=np.array(json.dumps(list(texts))), raw=raw.astype(np.float32), **extra)
    write_atomic(path, buf.getvalue())
    return texts, raw, ids


@cache
def _matrix(model: str, layer: str, kind: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(texts, raw values [units, items]) of one kind for a whole layer, from the fixtures."""
    try:
        if kind == Kind.WEIGHT_LABEL:
            matrix, names = fixtures.load_weight_label(layer, model)
            return tuple(names), np.asarray(matrix, dtype=np.float64)
        if kind in (Kind.WEIGHT_CLIP, Kind.WEIGHT_EXPLANATION):
            matrix, labels = fixtures.load_weight_clip(layer, model)
            return tuple(str(x) for x in labels), np.asarray(matrix, dtype=np.float64)
        if kind == Kind.CAPTION_ACTIVATION:
            acts, _ids = fixtures.load_activations(layer)
            return tuple(p["caption"] for p in fixtures.load_probe()), np.asarray(acts, dtype=np.float64).T
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no {kind} fixtures for {model}/{layer} (committed: efficientnet_lite0 weight-label for _conv_head "
            "and _blocks.15, weight-clip for _blocks.15, caption-activation for _conv_head and _blocks.15); "
            "for another model or layer pass --probe DIR"
        ) from None
    raise ValueError(f"unknown pair kind {kind!r}; known: {', '.join(Kind)}")


def fixture_pairs(model: str, layer: str, kind: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(texts, raw [units, items]) of one kind for a whole layer, from the fixtures (numpy only)."""
    return _matrix(model, layer, kind)


def fixture_width(model: str, layer: str, kind: str = Kind.WEIGHT_LABEL) -> int:
    """Units in the fixtures' matrix of one kind for the layer (numpy only); raises when the fixtures lack it."""
    return _matrix(model, layer, kind)[1].shape[0]


def layer_width(model: str, layer: str) -> int | None:
    """Units in the layer: from the fixtures when they hold it (numpy only), else from the model (torch);
    None when neither can say (no torch, an unknown model or layer: the caller asks for the units)."""
    try:
        return int(fixture_width(model, layer))
    except (FileNotFoundError, KeyError, ValueError):
        pass
    try:
        return int(models.load_model(model).layer_width(layer))
    except Exception:  # noqa: BLE001 - no torch, unknown model or layer: the user gives --units instead
        return None


def load_target(
    neuron: str,
    kind: str,
    polarity: str = Polarity.POSITIVE,
    *,
    next_explanations: Mapping[int, str] | None = None,
    source: Source = FIXTURES,
) -> Target:
    """A neuron's full list of pairs of one kind (from `source`: the fixtures by default).

    ``next_explanations`` (kind ``weight-explanation`` only): explanations of next-layer units by
    unit index; the target keeps the units that have one.
    """
    model, layer, unit = parse_neuron_id(neuron)
    base, feature = split_layer(layer)
    if feature is not None:
        return _feature_target(neuron, model, base, feature, unit, kind, polarity, source)
    if source.probe is not None:
        texts, raw = _live_matrix(
            model, layer, kind, Path(source.probe).resolve(), Path(source.cache_dir), source.device
        )
    else:
        texts, raw = _matrix(model, layer, kind)
    if not 0 <= unit < raw.shape[0]:
        raise ValueError(f"{neuron}: unit {unit} out of range; {layer} has {raw.shape[0]} units")
    values = raw[unit]
    if kind == Kind.WEIGHT_EXPLANATION:
        if not next_explanations:
            raise ValueError(f"{neuron}: a weight-explanation target needs explanations of the next layer's units")
        keep = sorted(next_explanations)
        texts, values = tuple(next_explanations[j] for j in keep), values[keep]
    return Target(neuron, kind, tuple(texts), np.asarray(values, dtype=np.float64), polarity)


# ----------------------------------------------------------------------------- features of a layer

#: The kinds a feature's unit has: both need only the layer's own channels (next-layer labels would too, but
#: no one has asked).
FEATURE_KINDS = (Kind.CAPTION_ACTIVATION, Kind.WEIGHT_LABEL)


def _feature_path(file: str) -> Path:
    """A feature file as the id names it: from the current folder, else (a relative path that is not there)
    from the checkout, so that a study's ``fixtures/...`` file is found wherever `vse reproduce` runs."""
    path = Path(file)
    if path.exists() or path.is_absolute():
        return path
    inside = data_root() / path
    return inside if inside.exists() else path


@cache
def feature_file(model: str, layer: str, feature: Feature) -> sae.SaeFile | np.ndarray:
    """The feature's file, read once and checked against ``model/layer``: an `SaeFile` (trained on this model
    and layer, of its width) or the directions ``[n, width]``; one line (`UserError`) for anything else."""
    width = layer_width(model, layer)
    path = _feature_path(feature.file)
    try:
        if feature.kind == FeatureKind.SAE:
            found = sae.load_sae(path)
            if (found.model, found.layer) != (model, layer):
                raise sae.FeatureFileError(
                    f"{feature.file} was trained on {found.model}/{found.layer}, not {model}/{layer}: "
                    f"its units are {found.model}/{found.layer}/sae:{feature.file}/INDEX"
                )
            if width is not None and found.width != width:
                raise sae.FeatureFileError(
                    f"{feature.file}: an SAE of width {found.width}, but {model}/{layer} has {width} channels"
                )
            return found
        return sae.load_directions(path, width)
    except sae.FeatureFileError as exc:
        raise UserError(str(exc)) from None


def feature_width(model: str, layer: str, feature: Feature) -> int:
    """Units of the feature: the SAE's latents or the file's directions."""
    found = feature_file(model, layer, feature)
    return found.latents if isinstance(found, sae.SaeFile) else int(found.shape[0])


def _channels(model: str, layer: str, kind: str, source: Source) -> tuple[tuple[str, ...], np.ndarray]:
    """(texts, raw [channels, items]) of the layer's channels: the fixtures, or the model on the probe folder."""
    if source.probe is not None:
        return _live_matrix(model, layer, kind, Path(source.probe).resolve(), Path(source.cache_dir), source.device)
    return _matrix(model, layer, kind)


@cache
def sae_probe_latents(
    model: str, layer: str, feature: Feature, probe: Path, cache_dir: Path, device: str = "cpu"
) -> tuple[tuple[str, ...], np.ndarray]:
    """(captions, pooled codes [latents, images]) of an SAE's latents on a probe folder, through the model
    (spatial maps), cached on disk under the SAE file's and the probe set's identity."""
    found = feature_file(model, layer, feature)
    digest = hashlib.sha256(_feature_path(feature.file).read_bytes()).hexdigest()[:16]
    path = cache_dir / f"{model}__{layer}__sae-{digest}__{probe.name}-{_probe_key(probe)}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        return tuple(json.loads(str(data["texts"]))), np.asarray(data["raw"], dtype=np.float64)
    probe_set = datasets.load_folder(probe)
    missing = [it.id for it in probe_set.items if not it.caption]
    if missing:
        raise ValueError(f"{len(missing)} images of {probe} have no caption (first: {missing[0]})")
    ids, pooled = sae.probe_latents(models.load_model(model), probe_set, found, device=device)
    captions = {it.id: it.caption for it in probe_set.items}
    texts, raw = tuple(captions[i] for i in ids), np.asarray(pooled, dtype=np.float64).T
    cache_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, texts=np.array(json.dumps(list(texts))), raw=raw.astype(np.float32))
    write_atomic(path, buf.getvalue())
    return texts, raw


def _feature_target(
    neuron: str, model: str, layer: str, feature: Feature, unit: int, kind: str, polarity: str, source: Source
) -> Target:
    """A direction's or an SAE latent's pairs (see the module docstring)."""
    if kind not in FEATURE_KINDS:
        raise UserError(
            f"{neuron}: a {feature.kind.value} unit has {' and '.join(FEATURE_KINDS)} pairs, not {kind} "
            "(it needs the next layer's labels)"
        )
    found = feature_file(model, layer, feature)
    n = found.latents if isinstance(found, sae.SaeFile) else found.shape[0]
    if not 0 <= unit < n:
        raise UserError(f"{neuron}: unit {unit} out of range; {feature.file} has {n} units (0..{n - 1})")
    if isinstance(found, sae.SaeFile) and kind == Kind.CAPTION_ACTIVATION:
        if source.probe is None:
            texts, values = found.probe_captions, found.probe_activations[:, unit]
        else:
            texts, raw = sae_probe_latents(
                model, layer, feature, Path(source.probe).resolve(), Path(source.cache_dir), source.device
            )
            values = raw[unit]
        return Target(neuron, kind, tuple(texts), np.asarray(values, dtype=np.float64), polarity)
    vector = np.asarray(found.decoder[unit] if isinstance(found, sae.SaeFile) else found[unit], dtype=np.float64)
    texts, channels = _channels(model, layer, kind, source)
    if channels.shape[0] != vector.shape[0]:
        raise UserError(f"{neuron}: a vector of width {vector.shape[0]}, but {layer} has {channels.shape[0]} channels")
    # Each item's value is the vector's dot with the channels' values on it: one exact dot per item.
    values = exact.dots(np.ascontiguousarray(channels.T), vector)
    return Target(neuron, kind, tuple(texts), np.asarray(values, dtype=np.float64), polarity)


# ----------------------------------------------------------------------------- few-shot neurons


def fewshot_file(model: str, layer: str) -> dict:
    name = f"{model}__{layer}.json"
    try:
        text = resources.files("vse.fewshot").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no hand-labelled few-shot neurons for {model}/{layer}: vse/fewshot/{name} is missing"
        ) from None
    return json.loads(text)


def fewshot_explanations(model: str, layer: str, kind: str) -> list[tuple[int, str]]:
    """(unit, hand-written explanation) of the few-shot neurons for one kind of pairs."""
    data = fewshot_file(model, layer)
    entry = data["kinds"].get(kind)
    if entry is None:
        raise ValueError(
            f"no hand-labelled few-shot neurons for {kind} pairs of {model}/{layer} "
            f"(vse/fewshot/{model}__{layer}.json has {', '.join(data['kinds'])})"
        )
    return [(n["unit"], n["explanation"]) for n in entry["neurons"]]


def excluded_units(model: str, layer: str) -> set[int]:
    """Few-shot and prompt-development units of a layer: never evaluation neurons."""
    data = fewshot_file(model, layer)
    units = {n["unit"] for k in data["kinds"].values() for n in k["neurons"]}
    return units | set(data.get("dev_neurons", []))


def draw_neurons(model: str, layer: str, n: int, seed: int, *, exclude: Sequence[int] = ()) -> list[int]:
    """Evaluation units drawn at random with `seed` (stream "neurons"), never few-shot or dev units
    (nor the units in `exclude`: e.g. those an earlier study looked at while designing this one)."""
    excluded = excluded_units(model, layer) | {int(u) for u in exclude}
    candidates = np.array([u for u in range(fixture_width(model, layer)) if u not in excluded])
    return [int(u) for u in rng(seed, "neurons").choice(candidates, size=n, replace=False)]


def clip_dissect_label(neuron: str) -> str:
    model, layer, unit = parse_neuron_id(neuron)
    try:
        labels = {d["unit"]: d["label"] for d in fixtures.load_dissect(layer)}
    except FileNotFoundError:
        raise FileNotFoundError(f"no CLIP-Dissect labels for {model}/{layer} in the fixtures") from None
    if unit not in labels:
        raise ValueError(f"{neuron}: unit {unit} out of range; {layer} has {len(labels)} units")
    return labels[unit]
