"""The layer atlas: an index of every labelled unit and one card per neuron, as static HTML.

A *card* (`Card`) is what is known of one neuron: every explanation with its scores per target and
protocol (and, for scored ones, one pass's true vs simulated values per item), its top-activating
probe images with captions and activations (the bottom ones for negative polarity, both for
signed), and the pairs a Weight-* method read (classes or next-layer units, with their weights).
`render_card` turns a card into one ``<article data-neuron="MODEL/LAYER/UNIT">``; the results
report (`vse.outputs.report`) and the atlas (`build_atlas`) are both made of these parts.

The atlas is a folder opened from disk (``index.html``; no server, no network): the index is one
table (one row per explanation, sortable by any column, text search, a score filter; the state
also reads from the URL fragment, e.g. ``index.html#q=dog&sort=score-0&dir=desc``), and each neuron
has its own page under ``cards/``. Images are files (thumbnails under ``img/``), never inline data,
so a 1280-unit layer opens fast. Every output is a pure function of the inputs: sorted neurons,
no timestamps.

Where the images come from: a probe folder (``--probe DIR``: activations through the cached
extraction of `vse.data.loader.live_pairs`, any registered model), else the committed fixtures
(EfficientNet-Lite0 on the Tux Paint stamps, 48 px thumbnails), else none (the card says so).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vse.atomic import read_jsonl, write_atomic
from vse.core.target import POLARITIES, neuron_stem, parse_neuron_id
from vse.core.vocab import Kind, Method, Polarity
from vse.data import loader
from vse.vision import datasets, fixtures

#: The explanation length the committed experiments allowed (ExplainConfig.max_tokens when they were
#: recorded): a record that used all of it in one call was cut off by the model's budget.
RECORDED_MAX_TOKENS = 60
N_IMAGES = 12  # probe images per strip
N_CLASSES = 10  # Weight-* pairs per list
N_SIM_ITEMS = 60  # items of one pass in the true-vs-simulated plot (a pass has 40-50)
THUMB_PX = 128  # probe-folder thumbnails (the fixtures' are 48 px, shown at 96)
FULL_PX = 512  # probe-folder images when enlarged


# ----------------------------------------------------------------------------- the data of a card


@dataclass(frozen=True)
class Item:
    """One shown pair: a text (caption, class name, next-layer label), its value, and an image.

    image / full: paths relative to the site's root (thumbnail, enlarged); None for text pairs.
    """

    text: str
    value: float
    image: str | None = None
    full: str | None = None


@dataclass(frozen=True)
class SimItem:
    """One item of a scoring pass: its index in the target, its text, the true (scaled) value and
    the simulated (expected) one."""

    index: int
    true: float
    predicted: float
    text: str = ""


@dataclass(frozen=True)
class Score:
    """One explanation's score on one target under one protocol.

    mean, half_width, passes, hit_cap: Algorithm 1's outcome (None where the record has no interval).
    items: the first pass's items (true vs simulated), empty when the record keeps no passes.
    n_passes_kept: how many passes the record holds (the plot shows the first).
    """

    target: str
    protocol: str
    mean: float | None
    half_width: float | None = None
    passes: int | None = None
    hit_cap: bool = False
    items: tuple[SimItem, ...] = ()
    n_passes_kept: int = 0

    @property
    def column(self) -> str:
        return f"{self.target} · {self.protocol}" if self.protocol else self.target


@dataclass(frozen=True)
class Explanation:
    """One explanation of a neuron and every score it got.

    cut: why the text is known to stop mid-sentence ("" when it is not): the model hit its token
        budget (``finish_reason == "length"``, recorded as ``"cut"`` by new runs, or for older
        records: one call that used all of ``max_tokens``).
    """

    method: str
    polarity: str
    text: str
    cut: str = ""
    scores: tuple[Score, ...] = ()

    def best(self) -> float | None:
        means = [s.mean for s in self.scores if s.mean is not None]
        return max(means) if means else None


@dataclass(frozen=True)
class WeightPairs:
    """The pairs a Weight-* method reads for one neuron: ``kind`` ("weight-label": classes; "weight-clip":
    next-layer units by their CLIP-Dissect labels), the highest-weighted and the lowest-weighted ones."""

    kind: str
    highest: tuple[Item, ...] = ()
    lowest: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Card:
    """Everything shown for one neuron (see the module doc). ``notes``: what could not be shown, and why."""

    neuron: str
    explanations: tuple[Explanation, ...]
    top: tuple[Item, ...] = ()
    bottom: tuple[Item, ...] = ()
    n_probe: int = 0
    weights: tuple[WeightPairs, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def polarities(self) -> tuple[str, ...]:
        seen = {e.polarity for e in self.explanations} or {Polarity.POSITIVE}
        return tuple(p for p in POLARITIES if p in seen)

    @property
    def slug(self) -> str:
        return slug(self.neuron)


def slug(neuron: str) -> str:
    """A file-name-safe id of a neuron: ``model__layer__unit``."""
    return neuron_stem(*parse_neuron_id(neuron))


def neuron_key(neuron: str) -> tuple[str, str, int]:
    model, layer, unit = parse_neuron_id(neuron)
    return model, layer, unit


def _num(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def cut_reason(rec: Mapping, max_tokens: int | None = RECORDED_MAX_TOKENS) -> str:
    """Why an explanation record's text stops mid-sentence, "" if it does not (as far as is known).

    A new record says so itself (``"cut": true``, from the reply's ``finish_reason == "length"``).
    An older one is judged from its cost: one call whose completion used all ``max_tokens`` can
    only have ended at the budget (a reply that stops at the newline uses fewer). Texts without a
    record of their cost (a score record) are not judged: punctuation alone cannot tell ("birds and
    insects" is a whole answer to "the main thing this neuron does is find").
    """
    if rec.get("cut") == "trimmed":
        return "trimmed: the token budget stopped the model mid-sentence; kept up to its last full sentence"
    if rec.get("cut"):
        return "cut off by the token budget (finish_reason = length)"
    tokens, calls = rec.get("completion_tokens"), rec.get("calls")
    if max_tokens and isinstance(tokens, int) and calls == 1 and tokens >= max_tokens:
        return f"cut off by the token budget ({tokens} of max_tokens {max_tokens} used)"
    return ""


class _Collector:
    """Explanations and scores of many records, grouped per neuron and explanation, in first-seen order."""

    def __init__(self, max_tokens: int | None) -> None:
        self.max_tokens = max_tokens
        self.data: dict[str, dict[tuple[str, str, str], dict]] = {}
        self.failed: list[str] = []

    def _entry(self, neuron: str, method: str, polarity: str, text: str) -> dict:
        parse_neuron_id(neuron)
        per = self.data.setdefault(neuron, {})
        return per.setdefault((str(method), str(polarity or Polarity.POSITIVE), str(text)), {"cut": "", "scores": []})

    def explanation(self, rec: Mapping) -> None:
        e = self._entry(
            rec["neuron"], rec.get("method", ""), rec.get("polarity", Polarity.POSITIVE), rec.get("explanation", "")
        )
        e["cut"] = e["cut"] or cut_reason(rec, self.max_tokens)

    def score(self, rec: Mapping) -> None:
        neuron, method = rec["neuron"], rec.get("method", "")
        polarity, text = rec.get("polarity", Polarity.POSITIVE), rec.get("explanation", "")
        if method == "user":  # `vse score` / `vse label` name no method: the explanation's own, when it is known
            known = [m for (m, p, t) in self.data.get(neuron, {}) if (p, t) == (polarity, text)]
            method = known[0] if known else method
        e = self._entry(neuron, method, polarity, text)
        prov = rec.get("provenance") if isinstance(rec.get("provenance"), Mapping) else {}
        protocol = str(rec.get("protocol") or prov.get("protocol") or "")
        details = [d for d in rec.get("details") or () if isinstance(d, Mapping) and d.get("items")]
        items: tuple[SimItem, ...] = ()
        if details:
            d = details[0]
            # A record is shown as it was written: lists of unequal length show the items all three have.
            items = tuple(
                SimItem(int(i), float(t), float(p))
                for i, t, p in zip(d["items"], d["true"], d["predicted"], strict=False)
            )[:N_SIM_ITEMS]
        e["scores"].append(
            Score(
                str(rec.get("target", "")),
                protocol,
                _num(rec.get("mean")),
                _num(rec.get("half_width")),
                rec.get("passes") if isinstance(rec.get("passes"), int) else None,
                bool(rec.get("hit_cap")),
                items,
                len(details),
            )
        )

    def add(self, rec: Mapping) -> None:
        if not isinstance(rec, Mapping):
            return
        if rec.get("status") == "failed":
            self.failed.append(f"unit {rec.get('unit')}: {rec.get('error', 'failed')}")
            return
        if isinstance(rec.get("explanations"), list):  # a `vse label` record: a unit's explanations and scores
            for e in rec["explanations"]:
                self.explanation(e)
            for s in rec.get("scores") or ():
                self.score(s)
        elif not isinstance(rec.get("neuron"), str):
            return
        elif rec.get("target"):
            self.score(rec)
        elif "explanation" in rec:
            self.explanation(rec)

    def cards(self) -> list[Card]:
        out = []
        for neuron in sorted(self.data, key=neuron_key):
            expls = tuple(
                Explanation(m, p, t, v["cut"], tuple(v["scores"])) for (m, p, t), v in self.data[neuron].items()
            )
            out.append(Card(neuron, expls))
        return out


def cards_from_records(
    records: Iterable[Mapping], *, max_tokens: int | None = RECORDED_MAX_TOKENS
) -> tuple[list[Card], list[str]]:
    """Cards (explanations and scores only, sorted by model, layer, unit) from any mix of records:
    `vse label` lines, `ExplanationRecord`s, `ScoreRecord`s and a study's per-neuron rows.
    Also returns the failed units' errors (a failed `vse label` line), so a page can list them."""
    c = _Collector(max_tokens)
    for rec in records:
        c.add(rec)
    return c.cards(), c.failed


def read_objects(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file (other values are skipped); a bad line is an error naming the file and line."""
    return [rec for rec in read_jsonl(path) if isinstance(rec, dict)]


def folder_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def folder_records(folder: Path) -> list[dict]:
    """Every explanation and score an experiment folder holds, as records `vse.outputs.atlas.cards_from_records` reads:
    explanations.jsonl / explanation.json (with their cost, so cut ones are known), results.jsonl (scores
    with their passes), neurons.jsonl (a study's per-neuron scores) or else scores.csv (the same, as CSV).
    Records without a polarity get the experiment's."""
    exp = folder_config(folder).get("experiment") or {}
    model, layer = exp.get("model"), exp.get("layer")
    records: list[dict] = []
    for name in ("explanations.jsonl", "results.jsonl", "neurons.jsonl"):
        if (folder / name).is_file():
            records += [r for r in read_objects(folder / name) if isinstance(r.get("neuron"), str)]
    if (folder / "explanation.json").is_file():
        one = json.loads((folder / "explanation.json").read_text(encoding="utf-8"))
        records += [one] if isinstance(one, dict) else []
    if not (folder / "neurons.jsonl").is_file() and (folder / "scores.csv").is_file() and model and layer:
        with (folder / "scores.csv").open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if {"unit", "method", "explanation", "target", "corr"} <= set(row):
                    records.append(
                        {
                            "neuron": f"{model}/{layer}/{row['unit']}",
                            "method": row["method"],
                            "explanation": row["explanation"],
                            "target": row["target"],
                            "protocol": row.get("protocol", ""),
                            "mean": float(row["corr"]) if row["corr"] else None,
                        }
                    )
    polarity = exp.get("polarity", Polarity.POSITIVE)
    return [r if "polarity" in r else {**r, "polarity": polarity} for r in records]


# ----------------------------------------------------------------------------- where pairs and images come from


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
            self._layers[key] = (
                self._probe_layer(model, layer) if self.probe is not None else self._fixture_layer(model, layer)
            )
        return self._layers[key]

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


# ----------------------------------------------------------------------------- HTML parts

CSS = """
:root { --ink: #222; --muted: #666; --line: #ddd; --pos: #1b6e3a; --neg: #a3262a; --both: #5b3c99; --sim: #e08a1e; --true: #2a5db0; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: var(--ink); line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.15em; margin: 0; } h4 { font-size: 1em; margin: 1em 0 .4em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid var(--line); padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
details > summary { cursor: pointer; color: #0645ad; }
.summary { color: #333; margin: .2em 0 .8em; max-width: 70em; }
.note { color: var(--muted); font-style: italic; }
.pol { display: inline-block; font-size: .8em; font-weight: 600; padding: .05em .5em; border-radius: 1em; color: #fff; vertical-align: middle; }
.pol-positive { background: var(--pos); } .pol-negative { background: var(--neg); } .pol-both { background: var(--both); }
mark.cut { background: #ffe3b3; color: #7a4a00; font-size: .8em; padding: 0 .3em; border-radius: 3px; margin-left: .3em; white-space: nowrap; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .8em 1em; margin: 1em 0; background: #fff; }
.card header { display: flex; gap: .8em; align-items: baseline; flex-wrap: wrap; }
.card table.expl td.text { max-width: 48em; }
.strip { display: flex; flex-wrap: wrap; gap: 10px; }
figure.thumb { margin: 0; width: 128px; }
figure.thumb img { width: 128px; height: 128px; object-fit: contain; background: #fafafa; border: 1px solid var(--line); display: block; }
figure.thumb img.small { image-rendering: auto; }
figure.thumb figcaption { font-size: 12.5px; line-height: 1.25; margin-top: 3px; overflow-wrap: anywhere; }
figure.thumb .v { font-variant-numeric: tabular-nums; color: var(--muted); }
.bars td.bar { width: 160px; } .bars .b { height: 10px; background: var(--pos); display: inline-block; vertical-align: middle; }
.bars .b.neg { background: var(--neg); }
.sim svg { background: #fcfcfc; border: 1px solid var(--line); }
.legend span { display: inline-block; width: .8em; height: .8em; margin: 0 .2em 0 .8em; vertical-align: middle; }
#lightbox { position: fixed; inset: 0; background: rgba(0,0,0,.8); display: flex; align-items: center; justify-content: center;
            flex-direction: column; z-index: 10; cursor: zoom-out; }
#lightbox[hidden] { display: none; }
#lightbox img { width: min(80vh, 90vw); height: min(80vh, 90vw); object-fit: contain; background: #fff; }
#lightbox p { color: #fff; font-size: 1.1em; max-width: 60em; text-align: center; }
.controls { display: flex; gap: 1em; flex-wrap: wrap; align-items: center; margin: .6em 0; }
.controls input[type=search] { width: 24em; }
#units th { cursor: pointer; user-select: none; position: sticky; top: 0; }
#units th[aria-sort=ascending]::after { content: " ▲"; } #units th[aria-sort=descending]::after { content: " ▼"; }
#units td.text { min-width: 22em; max-width: 40em; }
th.score { white-space: normal; min-width: 7em; max-width: 11em; } th.score small { font-weight: normal; color: var(--muted); }
td.method { white-space: nowrap; } table.expl td.text { min-width: 20em; }
nav.pager { display: flex; gap: 1.2em; margin: .4em 0 1em; }
ul.toc { columns: 2; } .files a { margin-right: .8em; }
"""

# One script for the index (sort, search, filter, URL fragment) and the cards (click to enlarge).
# No network, no libraries; the page works without it (rows, cards and image links stay usable).
SCRIPT = r"""
(function () {
  "use strict";
  function params() {
    var out = {}, raw = (location.hash || "").replace(/^#/, "");
    raw.split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("="), k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? "" : kv.slice(i + 1);
      try { out[decodeURIComponent(k)] = decodeURIComponent(v.replace(/\+/g, " ")); } catch (e) {}
    });
    return out;
  }
  // Click to enlarge: any a.zoom opens its image (href) with its caption in an overlay.
  var box = null;
  function show(a) {
    if (!box) {
      box = document.createElement("div"); box.id = "lightbox"; box.hidden = true;
      box.innerHTML = "<img alt=''><p></p>";
      box.addEventListener("click", function () { box.hidden = true; });
      document.addEventListener("keydown", function (e) { if (e.key === "Escape") box.hidden = true; });
      document.body.appendChild(box);
    }
    box.querySelector("img").src = a.getAttribute("href");
    box.querySelector("p").textContent = a.getAttribute("data-caption") || "";
    box.hidden = false;
  }
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest("a.zoom") : null;
    if (a) { e.preventDefault(); show(a); }
  });
  // A link to a card inside a folded section (<details>) opens the folds first.
  function reveal() {
    var id = (location.hash || "").slice(1), el;
    if (!id || id.indexOf("=") >= 0) return;
    try { el = document.getElementById(decodeURIComponent(id)); } catch (e) { return; }
    if (!el) return;
    for (var p = el.parentElement; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    el.scrollIntoView();
  }
  window.addEventListener("hashchange", reveal);
  reveal();
  var table = document.getElementById("units");
  if (table) {
    var body = table.tBodies[0], heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var rows = Array.prototype.slice.call(body.rows), text = rows.map(function (r) { return r.textContent.toLowerCase(); });
    var q = document.getElementById("q"), col = document.getElementById("scol"), min = document.getElementById("smin");
    var count = document.getElementById("count"), state = { sort: null, dir: "asc" };
    function cell(r, i) {
      var td = r.cells[i], v = td.getAttribute("data-v");
      if (v === null) return td.textContent.toLowerCase();
      return v === "" ? NaN : parseFloat(v);
    }
    function sortBy(key, dir) {
      var i = heads.findIndex(function (h) { return h.getAttribute("data-key") === key; });
      if (i < 0) return;
      var num = heads[i].getAttribute("data-type") === "num", sign = dir === "desc" ? -1 : 1;
      var keyed = rows.map(function (r, k) { return [cell(r, i), k, r]; });
      keyed.sort(function (a, b) {
        var x = a[0], y = b[0];
        if (num) {  // missing numbers last, whatever the direction
          if (isNaN(x) || isNaN(y)) return isNaN(x) === isNaN(y) ? a[1] - b[1] : (isNaN(x) ? 1 : -1);
          return x === y ? a[1] - b[1] : (x < y ? -sign : sign);
        }
        return x === y ? a[1] - b[1] : (x < y ? -sign : sign);
      });
      var frag = document.createDocumentFragment();
      keyed.forEach(function (t) { frag.appendChild(t[2]); });
      body.appendChild(frag);
      heads.forEach(function (h, j) { if (j === i) h.setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending"); else h.removeAttribute("aria-sort"); });
      state.sort = key; state.dir = dir;
    }
    function filter() {
      var words = (q.value || "").toLowerCase().split(/\s+/).filter(Boolean);
      var ci = col && col.value ? heads.findIndex(function (h) { return h.getAttribute("data-key") === col.value; }) : -1;
      var lo = min && min.value !== "" ? parseFloat(min.value) : NaN, shown = 0;
      rows.forEach(function (r, k) {
        var ok = words.every(function (w) { return text[k].indexOf(w) >= 0; });
        if (ok && ci >= 0 && !isNaN(lo)) { var v = cell(r, ci); ok = !isNaN(v) && v >= lo; }
        r.hidden = !ok; if (ok) shown++;
      });
      count.textContent = shown + " of " + rows.length + " rows";
      table.setAttribute("data-shown", String(shown));
    }
    function save() {
      var p = [];
      if (q.value) p.push("q=" + encodeURIComponent(q.value));
      if (state.sort) p.push("sort=" + encodeURIComponent(state.sort), "dir=" + state.dir);
      if (col && col.value) p.push("col=" + encodeURIComponent(col.value));
      if (min && min.value !== "") p.push("min=" + encodeURIComponent(min.value));
      try { history.replaceState(null, "", "#" + p.join("&")); } catch (e) { /* file:// may refuse; the state is only a convenience */ }
    }
    heads.forEach(function (h) {
      h.addEventListener("click", function () {
        var key = h.getAttribute("data-key");
        var dir = state.sort === key ? (state.dir === "asc" ? "desc" : "asc") : (h.getAttribute("data-type") === "num" ? "desc" : "asc");
        sortBy(key, dir); save();
      });
    });
    [q, col, min].forEach(function (el) { if (el) el.addEventListener("input", function () { filter(); save(); }); });
    var p = params();
    if (p.q) q.value = p.q;
    if (p.col && col) col.value = p.col;
    if (p.min && min) min.value = p.min;
    if (p.sort) sortBy(p.sort, p.dir === "desc" ? "desc" : "asc");
    filter();
  }
  document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
})();
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def score_text(s: Score) -> str:
    if s.mean is None:
        return "failed"
    text = f"{s.mean:.2f}"
    if s.half_width is not None:
        text += f" ± {s.half_width:.2f}"
    if s.passes is not None:
        text += f" ({s.passes}{', cap' if s.hit_cap else ''})"
    return text


def polarity_badge(polarity: str) -> str:
    meaning = {
        Polarity.POSITIVE: "explained from what drives the unit up",
        Polarity.NEGATIVE: "explained from what drives the unit down (values flipped)",
        Polarity.BOTH: "signed: explained from both ends",
    }.get(polarity, polarity)
    return f'<span class="pol pol-{esc(polarity)}" title="{esc(meaning)}">{esc(polarity)}</span>'


def cut_mark(cut: str) -> str:
    label = "trimmed" if cut.startswith("trimmed") else "cut off"
    return f'<mark class="cut" title="{esc(cut)}">{label}</mark>' if cut else ""


def _strip(title: str, items: Sequence[Item], prefix: str, small: bool) -> str:
    figs = []
    for it in items:
        cap = f"{it.text} — activation {it.value:.3f}"
        img = (
            (
                f'<a class="zoom" href="{esc(prefix + (it.full or it.image))}" data-caption="{esc(cap)}">'
                f'<img{" class=small" if small else ""} src="{esc(prefix + it.image)}" alt="{esc(it.text)}" loading="lazy" '
                f'width="128" height="128"></a>'
            )
            if it.image
            else ""
        )
        figs.append(
            f'<figure class="thumb">{img}<figcaption>{esc(it.text)}<br><span class="v">{it.value:.3f}</span>'
            "</figcaption></figure>"
        )
    return f'<h4>{esc(title)}</h4>\n<div class="strip">' + "".join(figs) + "</div>"


def _bars(items: Sequence[Item]) -> str:
    top = max((abs(it.value) for it in items), default=0.0) or 1.0
    rows = []
    for it in items:
        w = round(100 * abs(it.value) / top)
        rows.append(
            f'<tr><td>{esc(it.text)}</td><td class="bar"><span class="b{" neg" if it.value < 0 else ""}" '
            f'style="width:{w}%"></span></td><td class="num">{it.value:.4f}</td></tr>'
        )
    return '<table class="bars"><tbody>' + "".join(rows) + "</tbody></table>"


WEIGHT_TITLES = {
    Kind.WEIGHT_LABEL: ("classes", "what Weight-Label reads"),
    Kind.WEIGHT_CLIP: ("next-layer units (CLIP-Dissect labels)", "what Weight-CLIP reads"),
}


def sim_plot(s: Score) -> str:
    """One pass's items, sorted by their true value: true (blue) and simulated (orange) bars, as inline SVG."""
    items = sorted(s.items, key=lambda it: (-it.true, it.index))
    signed = any(it.true < 0 or it.predicted < 0 for it in items)
    lo, hi = (-10.0, 10.0) if signed else (0.0, 10.0)
    w_item, h, pad = 10, 120, 4
    width = pad * 2 + w_item * len(items)

    def y(v: float) -> float:
        return pad + (h - 2 * pad) * (hi - max(lo, min(hi, v))) / (hi - lo)

    y0 = y(0.0)
    parts = [
        f'<svg class="simplot" role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
        f'aria-label="true vs simulated values of {len(items)} items">',
        f'<line x1="{pad}" x2="{width - pad}" y1="{y0:.1f}" y2="{y0:.1f}" stroke="#999" stroke-width="0.5"/>',
    ]
    for k, it in enumerate(items):
        x = pad + k * w_item
        for dx, v, color in ((0, it.true, "var(--true)"), (4, it.predicted, "var(--sim)")):
            top, bot = sorted((y(v), y0))
            parts.append(
                f'<rect x="{x + dx}" y="{top:.1f}" width="4" height="{max(bot - top, 0.5):.1f}" fill="{color}">'
                f"<title>{esc(it.text or '#' + str(it.index))}: true {it.true:g}, simulated {it.predicted:.2f}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _sim_section(e: Explanation) -> str:
    out = []
    for s in e.scores:
        if not s.items:
            continue
        rows = "".join(
            f'<tr><td>{esc(it.text or "#" + str(it.index))}</td><td class="num">{it.true:g}</td>'
            f'<td class="num">{it.predicted:.2f}</td></tr>'
            for it in sorted(s.items, key=lambda it: (-it.true, it.index))
        )
        out.append(
            f'<div class="sim" data-target="{esc(s.column)}"><p><b>{esc(e.method)}</b> on <b>{esc(s.column)}</b>: score {esc(score_text(s))}. '
            f"Pass 1 of {s.n_passes_kept}, {len(s.items)} items, sorted by the true value:"
            '<span class="legend"><span style="background:var(--true)"></span>true<span style="background:var(--sim)"></span>simulated</span></p>'
            f'{sim_plot(s)}<details><summary>the items</summary><table><thead><tr><th>item</th><th class="num">true</th>'
            f'<th class="num">simulated</th></tr></thead><tbody>{rows}</tbody></table></details></div>'
        )
    return "\n".join(out)


def render_card(
    card: Card, *, prefix: str = "", heading: str = "h3", anchor: str | None = None, link: str | None = None
) -> str:
    """One neuron as ``<article class="card" data-neuron=...>``; image paths get ``prefix`` (the way from
    the page to the site root). ``anchor``: the element id (default: the neuron's slug)."""
    pols = card.polarities
    title = f'<a href="{esc(link)}">{esc(card.neuron)}</a>' if link else esc(card.neuron)
    parts = [
        f'<article class="card" id="{esc(anchor or card.slug)}" data-neuron="{esc(card.neuron)}" data-polarity="{esc(" ".join(pols))}">',
        f"<header><{heading}>{title}</{heading}>" + " ".join(polarity_badge(p) for p in pols) + "</header>",
    ]
    columns = sorted({s.column for e in card.explanations for s in e.scores})
    head = "".join(f'<th class="num score" title="{esc(c)}">{column_head(c)}</th>' for c in columns)
    rows = []
    for e in card.explanations:
        by = {s.column: s for s in e.scores}
        cells = "".join(f'<td class="num">{esc(score_text(by[c])) if c in by else ""}</td>' for c in columns)
        rows.append(
            f'<tr data-method="{esc(e.method)}"><td class="method">{esc(e.method)}</td><td>{polarity_badge(e.polarity)}</td>'
            f'<td class="text">{esc(e.text)}{cut_mark(e.cut)}</td>{cells}</tr>'
        )
    parts.append(
        '<table class="expl"><thead><tr><th>method</th><th>polarity</th><th>explanation '
        "(“the main thing this neuron does is find …”)</th>"
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    if columns:
        parts.append(
            '<p class="note">Scores: 100 × Pearson r of simulated vs true values ± the 90% t-interval half-width (passes).</p>'
        )
    sims = "\n".join(x for x in (_sim_section(e) for e in card.explanations) if x)
    if sims:
        parts.append("<h4>True vs simulated values per item</h4>\n" + sims)
    small = any(it.image and it.image.endswith(".png") for it in card.top + card.bottom)
    if card.top:
        parts.append(
            _strip(f"Top-activating probe images ({len(card.top)} of {card.n_probe})", card.top, prefix, small)
        )
    if card.bottom:
        parts.append(
            _strip(
                f"Bottom-activating probe images ({len(card.bottom)} of {card.n_probe}, lowest first)",
                card.bottom,
                prefix,
                small,
            )
        )
    for w in card.weights:
        what, reads = WEIGHT_TITLES.get(w.kind, (w.kind, w.kind))
        if w.highest:
            parts.append(f"<h4>Highest-weighted {esc(what)} ({esc(reads)})</h4>" + _bars(w.highest))
        if w.lowest:
            parts.append(
                f"<h4>Lowest-weighted {esc(what)} ({esc(reads)}, flipped for negative polarity)</h4>" + _bars(w.lowest)
            )
    for note in card.notes:
        parts.append(f'<p class="note">{esc(note)}</p>')
    parts.append("</article>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the site


def column_head(column: str) -> str:
    """A score column's header: the target, and the protocol on a second, smaller line."""
    target, _, protocol = column.partition(" · ")
    return esc(target) + (f"<br><small>{esc(protocol)}</small>" if protocol else "")


def score_columns(cards: Sequence[Card]) -> list[str]:
    return sorted({s.column for c in cards for e in c.explanations for s in e.scores})


def render_index(
    cards: Sequence[Card],
    *,
    href: Callable[[int, Card], str],
    title: str,
    intro: str = "",
    failed: Sequence[str] = (),
    groups: Sequence[str] | None = None,
    heading: str = "h1",
) -> str:
    """The index: one row per explanation of every card, sortable, searchable, filterable; ``href(k, card)``
    links row to card. ``groups`` (one per card, e.g. the experiment) adds a first column."""
    cols = score_columns(cards)
    heads = ['<th data-key="group" data-type="text">experiment</th>'] if groups is not None else []
    heads += [
        '<th data-key="neuron" data-type="text">neuron</th>',
        '<th data-key="unit" data-type="num" class="num">unit</th>',
        '<th data-key="polarity" data-type="text">polarity</th>',
        '<th data-key="method" data-type="text">method</th>',
        '<th data-key="explanation" data-type="text">explanation</th>',
    ]
    heads += [
        f'<th data-key="score-{k}" data-type="num" class="num score" title="{esc(c)}">{column_head(c)}</th>'
        for k, c in enumerate(cols)
    ]
    rows = []
    for k, card in enumerate(cards):
        _model, _layer, unit = parse_neuron_id(card.neuron)
        link = esc(href(k, card))
        group = f"<td>{esc(groups[k])}</td>" if groups is not None else ""
        for e in card.explanations:
            by = {s.column: s for s in e.scores}
            cells = []
            for c in cols:
                s = by.get(c)
                v = "" if s is None or s.mean is None else f"{s.mean:.4f}"
                cells.append(f'<td class="num" data-v="{v}">{"" if s is None else esc(score_text(s))}</td>')
            rows.append(
                f'<tr data-neuron="{esc(card.neuron)}">{group}<td><a href="{link}">{esc(card.neuron)}</a></td>'
                f'<td class="num" data-v="{unit}">{unit}</td><td>{esc(e.polarity)}</td><td class="method">{esc(e.method)}</td>'
                f'<td class="text">{esc(e.text)}{cut_mark(e.cut)}</td>' + "".join(cells) + "</tr>"
            )
    options = '<option value="">any score column</option>' + "".join(
        f'<option value="score-{k}">{esc(c)}</option>' for k, c in enumerate(cols)
    )
    n_units = len({c.neuron for c in cards})  # a neuron in several experiments counts once
    controls = (
        '<div class="controls"><label>Search <input id="q" type="search" placeholder="words in any column"></label>'
        f'<label>Score <select id="scol">{options}</select></label>'
        '<label>at least <input id="smin" type="number" step="1" style="width:6em"></label>'
        f'<span id="count">{len(rows)} of {len(rows)} rows</span></div>'
    )
    fails = ""
    if failed:
        fails = (
            f"<details><summary>{len(failed)} unit(s) failed (rerun `vse label` to retry them)</summary><ul>"
            + "".join(f"<li>{esc(f)}</li>" for f in failed)
            + "</ul></details>"
        )
    table = (
        '<table id="units"><thead><tr>'
        + "".join(heads)
        + "</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )
    return (
        f'<{heading}>{esc(title)}</{heading}>\n<p class="summary">{n_units} units, {len(rows)} explanations. {intro}</p>\n'
        f"{fails}{controls}\n{table}"
    )


def page(
    title: str,
    body: str,
    *,
    css: str | None = None,
    script: str | None = None,
    css_href: str | None = None,
    script_href: str | None = None,
) -> str:
    head_css = f'<link rel="stylesheet" href="{esc(css_href)}">' if css_href else f"<style>{css or CSS}</style>"
    tail_js = f'<script src="{esc(script_href)}"></script>' if script_href else f"<script>{script or SCRIPT}</script>"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n{head_css}\n</head>\n<body>\n{body}\n{tail_js}\n</body>\n</html>\n"
    )


@dataclass(frozen=True)
class AtlasSummary:
    units: int
    explanations: int
    failed: int
    files: int
    bytes_total: int
    index_bytes: int
    out: str

    def __str__(self) -> str:
        return (
            f"atlas of {self.units} units ({self.explanations} explanations, {self.failed} failed units) -> "
            f"{self.out}/index.html; {self.files} files, {self.bytes_total / 1e6:.1f} MB (index {self.index_bytes / 1e3:.0f} kB)"
        )


def atlas_files(
    cards: Sequence[Card], *, title: str, intro: str = "", failed: Sequence[str] = (), sink: ImageSink | None = None
) -> dict[str, bytes]:
    """Every file of the site, relative to its root: index.html, cards/*.html, assets/, and the images."""
    sink = sink or ImageSink()
    files: dict[str, bytes] = {"assets/atlas.css": CSS.encode("utf-8"), "assets/atlas.js": SCRIPT.encode("utf-8")}

    def href(_k: int, card: Card) -> str:
        return f"cards/{card.slug}.html"

    index = render_index(cards, href=href, title=title, intro=intro, failed=failed)
    files["index.html"] = page(title, index, css_href="assets/atlas.css", script_href="assets/atlas.js").encode("utf-8")
    for k, card in enumerate(cards):
        nav = ['<a href="../index.html">← index</a>']
        if k > 0:
            nav.append(f'<a rel="prev" href="{esc(cards[k - 1].slug)}.html">← {esc(cards[k - 1].neuron)}</a>')
        if k + 1 < len(cards):
            nav.append(f'<a rel="next" href="{esc(cards[k + 1].slug)}.html">{esc(cards[k + 1].neuron)} →</a>')
        body = f'<nav class="pager">{"".join(nav)}</nav>\n' + render_card(card, prefix="../", heading="h1")
        files[f"cards/{card.slug}.html"] = page(
            f"{card.neuron} · {title}", body, css_href="../assets/atlas.css", script_href="../assets/atlas.js"
        ).encode("utf-8")
    files.update(sink.files)
    return files


def build_atlas(
    label_files: Sequence[Path],
    out: Path,
    *,
    probe: Path | None = None,
    cache_dir: Path = Path(".vse-cache"),
    device: str = "cpu",
    title: str | None = None,
    max_tokens: int | None = RECORDED_MAX_TOKENS,
    progress: bool = False,
) -> AtlasSummary:
    """Read `vse label` (or explain/score) JSONL files, build every card, write the site under ``out``."""
    records: list[dict] = []
    for path in label_files:  # a JSONL file, or a results folder of `vse reproduce`
        records += folder_records(Path(path)) if Path(path).is_dir() else read_objects(Path(path))
    cards, failed = cards_from_records(records, max_tokens=max_tokens)
    if not cards:
        raise ValueError(f"no explanations in {', '.join(str(p) for p in label_files)}: nothing to show")
    source, sink = PairSource(probe, cache_dir, device), ImageSink()
    cards = [
        add_views(c, source, sink)
        for c in tqdm(cards, desc="atlas cards", unit="unit", file=sys.stderr, disable=not progress)
    ]
    layers = sorted({c.neuron.rsplit("/", 1)[0] for c in cards})
    title = title or f"vse atlas: {', '.join(layers)}"
    where = (
        f"probe images from {probe.name}"
        if probe is not None
        else "probe images from the committed fixtures where they exist"
    )
    intro = (
        f"Click a column to sort, type to search, set a minimum score to filter; each neuron links to its card ({where}). "
        "Scores are 100 × Pearson r of simulated vs true values."
    )
    files = atlas_files(cards, title=title, intro=intro, failed=failed, sink=sink)
    out = Path(out)
    for rel in sorted(files):
        if rel != "index.html":  # plain writes (thousands of files; an fsync each would take long)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(files[rel])
    write_atomic(out / "index.html", files["index.html"])  # last: the index never links to a card not yet written
    return AtlasSummary(
        len(cards),
        sum(len(c.explanations) for c in cards),
        len(failed),
        len(files),
        sum(len(b) for b in files.values()),
        len(files["index.html"]),
        str(out),
    )
