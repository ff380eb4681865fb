"""The atlas as a site: every file (`atlas_files`) and the folder written from label files
(`build_atlas`); see the package doc for what the site holds."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from vse.atomic import write_atomic
from vse.outputs.atlas.cards import Card
from vse.outputs.atlas.from_records import RECORDED_MAX_TOKENS, cards_from_records, folder_records, read_objects
from vse.outputs.atlas.render import CSS, SCRIPT, esc, page, render_card, render_index
from vse.outputs.atlas.sources import ImageSink, PairSource, add_views


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
            f"{self.out}/index.html; {self.files} files, {self.bytes_total / 1e6:.1f} MB "
            f"(index {self.index_bytes / 1e3:.0f} kB)"
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
        "Click a column to sort, type to search, set a minimum score to filter; "
        f"each neuron links to its card ({where}). "
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
