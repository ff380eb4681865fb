"""Where a card's images and pairs come from: a probe folder (activations through the cached
extraction of `vse.data.loader.live_pairs`, any registered model), else the committed fixtures
(EfficientNet-Lite0 on the Tux Paint stamps, 48 px thumbnails), else none (the card says so).

A feature's units (``LAYER/sae:FILE``, ``LAYER/dir:FILE``) get their rows one unit at a time through
`vse.data.loader.load_target` (`FeatureRows`), and the images of their layer's channels when the items are the
same images in the same order (directions always; an SAE's latents when its file's probe set is the one shown)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vse.core.target import neuron_id, parse_neuron_id, split_layer
from vse.core.vocab import Kind, Method, Polarity
from vse.data import loader
from vse.outputs.atlas.cards import Card, Item, WeightPairs
from vse.vision import datasets, fixtures, sae

N_IMAGES = 12  # probe images per strip
N_CLASSES = 10  # Weight-* pairs per list
THUMB_PX = 128  # probe-folder thumbnails (the fixtures' are 48 px, shown at 96)
FULL_PX = 512  # probe-folder images when enlarged


@dataclass
class ImageSink:
    """The image files a site refers to: ``{path relative to the site root: bytes}``, written once each."""

    files: dict[str, bytes] = field(default_factory=dict)

    def png(self, rel: str, make: Callable[[], object]) -> str:
        if rel not in self.files:
            buf = io.BytesIO()
            make().save(buf, format="PNG", optimize=True)
            self.files[rel] = buf.getvalue()
        return rel

    def jpeg(self, rel: str, make: Callable[[], object]) -> str:
        if rel not in self.files:
            buf = io.BytesIO()
            make().save(buf, format="JPEG", quality=85)
            self.files[rel] = buf.getvalue()
        return rel


@dataclass(frozen=True)
class ProbeLayer:
    """A layer's activations on a probe set: texts (captions), raw [units, items], and each item's images."""

    name: str
    texts: tuple[str, ...]
    raw: np.ndarray
    image: Callable[[int, ImageSink], tuple[str, str]]  # item -> (thumbnail, enlarged) paths


class FeatureRows:
    """A feature's values of one kind as rows ``[units, items]``, each computed when a card asks for it (a
    dictionary has thousands of latents; an atlas shows a few)."""

    def __init__(self, model: str, layer: str, kind: str, units: int, source: loader.Source) -> None:
        self.model, self.layer, self.kind, self.source = model, layer, kind, source
        self.texts = loader.load_target(neuron_id(model, layer, 0), kind, source=source).texts
        self.shape = (units, len(self.texts))
        self._rows: dict[int, np.ndarray] = {}

    def __getitem__(self, unit: int) -> np.ndarray:
        if unit not in self._rows:
            neuron = neuron_id(self.model, self.layer, int(unit))
            self._rows[unit] = loader.load_target(neuron, self.kind, source=self.source).raw
        return self._rows[unit]


class PairSource:
    """Pairs for cards: a probe folder (any registered model, through `vse.data.loader.live_pairs`) or the
    committed fixtures. Every lookup returns None when its data are not available (e.g. no fixtures
    for the layer), so a card shows what there is and says what there is not."""

    def __init__(self, probe: Path | None = None, cache_dir: Path = Path(".vse-cache"), device: str = "cpu") -> None:
        self.probe = Path(probe).resolve() if probe is not None else None
        self.cache_dir = Path(cache_dir)
        self.device = device
        self._layers: dict[tuple[str, str], ProbeLayer | None] = {}
        self._kinds: dict[tuple[str, str, str], tuple[tuple[str, ...], np.ndarray] | None] = {}

    def activations(self, model: str, layer: str) -> ProbeLayer | None:
        key = (model, layer)
        if key not in self._layers:
            if split_layer(layer)[1] is not None:
                self._layers[key] = self._feature_layer(model, layer)
            else:
                self._layers[key] = (
                    self._probe_layer(model, layer) if self.probe is not None else self._fixture_layer(model, layer)
                )
        return self._layers[key]

    def _source(self) -> loader.Source:
        return loader.Source(self.probe, self.cache_dir, self.device)

    def _feature_layer(self, model: str, layer: str) -> ProbeLayer | None:
        """A feature's caption-activation rows with its layer's images, or None when its items are other images
        (an SAE file's own probe set that is not the fixtures')."""
        base, feature = split_layer(layer)
        channels = self.activations(model, base)
        if channels is None:
            return None
        found = loader.feature_file(model, base, feature)
        if self.probe is None and isinstance(found, sae.SaeFile):
            if list(found.probe_ids) != [p["id"] for p in fixtures.load_probe()]:
                return None
        units = loader.feature_width(model, base, feature)
        rows = FeatureRows(model, layer, Kind.CAPTION_ACTIVATION, units, self._source())
        return ProbeLayer(channels.name, rows.texts, rows, channels.image)

    def _fixture_layer(self, model: str, layer: str) -> ProbeLayer | None:
        if model != fixtures.DEFAULT_MODEL:
            return None
        try:
            acts, _ids = fixtures.load_activations(layer)
            captions = tuple(p["caption"] for p in fixtures.load_probe())
        except FileNotFoundError:
            return None

        def image(i: int, sink: ImageSink) -> tuple[str, str]:
            rel = sink.png(f"img/{fixtures.DEFAULT_PROBE}/{i:04d}.png", lambda: fixtures.load_thumbnail(i))
            return rel, rel  # 48 px is all the fixtures hold

        return ProbeLayer(fixtures.DEFAULT_PROBE, captions, np.asarray(acts, dtype=np.float64).T, image)

    def _probe_layer(self, model: str, layer: str) -> ProbeLayer:
        texts, raw, ids = loader.live_pairs(
            model, layer, Kind.CAPTION_ACTIVATION, self.probe, self.cache_dir, self.device
        )
        probe = self.probe
        assert ids is not None  # caption-activation pairs always keep their image ids

        def image(i: int, sink: ImageSink) -> tuple[str, str]:
            stem = hashlib.sha256(ids[i].encode("utf-8")).hexdigest()[:16]

            def sized(px: int):
                img = datasets.open_image(probe / ids[i])
                img.thumbnail((px, px))
                return img

            return (
                sink.jpeg(f"img/{probe.name}/{stem}.jpg", lambda: sized(THUMB_PX)),
                sink.jpeg(f"img/{probe.name}/{stem}-full.jpg", lambda: sized(FULL_PX)),
            )

        return ProbeLayer(probe.name, texts, raw, image)

    def pairs(self, model: str, layer: str, kind: str) -> tuple[tuple[str, ...], np.ndarray] | None:
        """(texts, raw [units, items]) of a weight kind or caption-activation, or None."""
        key = (model, layer, kind)
        if key not in self._kinds:
            self._kinds[key] = self._pairs(model, layer, kind)
        return self._kinds[key]

    def _pairs(self, model, layer, kind):
        base, feature = split_layer(layer)
        if feature is not None and kind == Kind.WEIGHT_LABEL:
            try:
                units = loader.feature_width(model, base, feature)
                rows = FeatureRows(model, layer, kind, units, self._source())
            except (FileNotFoundError, ValueError):
                return None
            return rows.texts, rows
        if kind == Kind.CAPTION_ACTIVATION:
            probe = self.activations(model, layer)
            return None if probe is None else (probe.texts, probe.raw)
        try:
            if self.probe is not None and kind == Kind.WEIGHT_LABEL:
                texts, raw, _ = loader.live_pairs(model, layer, kind, self.probe, self.cache_dir, self.device)
                return texts, raw
            if model == fixtures.DEFAULT_MODEL:
                return loader._matrix(model, layer, kind)
        except (FileNotFoundError, ValueError):
            return None
        return None


def _order(values: np.ndarray, n: int, highest: bool) -> list[int]:
    keys = -values if highest else values
    return [int(i) for i in np.argsort(keys, kind="stable")[:n]]


def add_views(
    card: Card, source: PairSource, sink: ImageSink, *, n_images: int = N_IMAGES, n_classes: int = N_CLASSES
) -> Card:
    """The card with its images, Weight-* pairs and the texts of its simulated items filled in."""
    model, layer, unit = parse_neuron_id(card.neuron)
    pols = set(card.polarities)
    notes = list(card.notes)
    top: tuple[Item, ...] = ()
    bottom: tuple[Item, ...] = ()
    n_probe = 0
    probe = source.activations(model, layer)
    if probe is None:
        notes.append(
            f"No probe images for {model}/{layer}: the fixtures hold EfficientNet-Lite0's; pass --probe DIR for others."
        )
    elif not 0 <= unit < probe.raw.shape[0]:
        notes.append(f"Unit {unit} is outside the probe activations of {layer} ({probe.raw.shape[0]} units).")
    else:
        col = probe.raw[unit]
        n_probe = col.shape[0]

        def strip(highest: bool) -> tuple[Item, ...]:
            out = []
            for i in _order(col, n_images, highest):
                thumb, full = probe.image(i, sink)
                out.append(Item(probe.texts[i], float(col[i]), thumb, full))
            return tuple(out)

        if pols & {Polarity.POSITIVE, Polarity.BOTH}:
            top = strip(True)
        if pols & {Polarity.NEGATIVE, Polarity.BOTH}:
            bottom = strip(False)
    weights = []
    methods = {e.method for e in card.explanations}
    for kind in (Kind.WEIGHT_LABEL, Kind.WEIGHT_CLIP):
        if kind not in methods and not (kind == Kind.WEIGHT_LABEL and Method.WEIGHT_EXPLANATION in methods):
            continue
        pairs = source.pairs(model, layer, kind)
        if pairs is None or not 0 <= unit < pairs[1].shape[0]:
            notes.append(f"The {kind} pairs of {model}/{layer} are not available here.")
            continue
        texts, raw = pairs
        row = raw[unit]
        hi = (
            tuple(Item(texts[i], float(row[i])) for i in _order(row, n_classes, True))
            if pols & {Polarity.POSITIVE, Polarity.BOTH}
            else ()
        )
        lo = (
            tuple(Item(texts[i], float(row[i])) for i in _order(row, n_classes, False))
            if pols & {Polarity.NEGATIVE, Polarity.BOTH}
            else ()
        )
        weights.append(WeightPairs(kind, hi, lo))
    expls = []
    for e in card.explanations:
        scores = []
        for s in e.scores:
            pairs = source.pairs(model, layer, s.target) if s.items else None
            if pairs is not None and 0 <= unit < pairs[1].shape[0]:
                texts = pairs[0]
                s = replace(
                    s,
                    items=tuple(
                        replace(it, text=texts[it.index]) if 0 <= it.index < len(texts) else it for it in s.items
                    ),
                )
            scores.append(s)
        expls.append(replace(e, scores=tuple(scores)))
    return replace(
        card,
        explanations=tuple(expls),
        top=top,
        bottom=bottom,
        n_probe=n_probe,
        weights=tuple(weights),
        notes=tuple(notes),
    )
