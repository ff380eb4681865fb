"""The results report: one HTML page over a results folder, made of the atlas's parts (`vse.outputs.atlas`).

Sections in order of what matters (the power study and the paper's tables first, then the rest by
name), each with a two-line summary (what it asks; what it holds, counted from its files), a link to its
full text under ``docs/studies/`` (relative, from ``results/``), its tables
(long ones folded), its files and cassettes (folded), and a card for every neuron it explained or
scored: explanations with their polarity and scores, explanations cut off by the token budget marked,
true vs simulated values per item, the probe images (top, or bottom for negative polarity, both when
signed) and the classes a Weight-* method read.

Images are files: each probe thumbnail the cards show is written once under ``results/img/`` (48 px PNGs
from the committed fixtures). The page has inline CSS and one small inline script (click an image to
enlarge it), read from ``vse/outputs/assets/`` (the atlas's, then ``report.css``); no network. The
output is a pure function of the folder's content (sorted folders, no timestamps), so two replays give
the same bytes. :func:`report_files` returns the page and the images;
the caller writes them under the results folder.
"""

from __future__ import annotations

import csv
from pathlib import Path
from urllib.parse import quote

from vse.core.vocab import Polarity, Protocol
from vse.outputs import atlas
from vse.outputs.atlas import Card, esc
from vse.outputs.experiment_notes import NOTES, PRIORITY, ExperimentNote
from vse.outputs.markdown_html import href, markdown_to_html

REPORT = "report.html"
IMAGES = "img"  # results/img/: the thumbnails the cards show (not an experiment)
# Files the report links to, in this order, when the experiment folder has them; any other file in the
# folder is linked after them (sorted), except the PNGs the page shows.
LINKED_FIRST = ("table.md", "config.json", "results.jsonl", "summary.json", "explanations.jsonl")
PLOT = "scores.png"
DOCS_FROM_REPORT = "../"  # from results/report.html back to the clone's root, where docs/ is
FOLD_ROWS = 12  # Markdown tables longer than this are folded
OPEN_CARDS = 3  # a section with at most this many neurons shows its cards unfolded
# The atlas's style, then the report's own (a table of contents, plots, the summary lines).
CSS = atlas.CSS + "\n" + atlas.asset("report.css")


# -- cards ------------------------------------------------------------------------------------
def experiment_cards(folder: Path, source: atlas.PairSource, sink: atlas.ImageSink) -> list[Card]:
    exp = atlas.folder_config(folder).get("experiment") or {}
    max_tokens = (exp.get("explain") or {}).get("max_tokens", atlas.RECORDED_MAX_TOKENS)
    cards, _failed = atlas.cards_from_records(atlas.folder_records(folder), max_tokens=max_tokens)
    return [atlas.add_views(c, source, sink) for c in cards]


# -- the page ---------------------------------------------------------------------------------
def _experiments(results: Path) -> list[Path]:
    folders = [d for d in Path(results).iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != IMAGES]
    rank = {name: k for k, name in enumerate(PRIORITY)}
    return sorted(folders, key=lambda d: (rank.get(d.name, len(PRIORITY)), d.name))


def _first_paragraph(folder: Path) -> str:
    table = folder / "table.md"
    if not table.is_file():
        return ""
    for para in table.read_text(encoding="utf-8").split("\n\n"):
        para = para.strip()
        if para and not para.startswith("#") and not para.startswith("|"):
            return " ".join(para.split())
    return ""


def _facts(folder: Path, cards: list[Card]) -> str:
    """The second summary line: what the folder holds, counted."""
    config = atlas.folder_config(folder)
    layers = sorted({c.neuron.rsplit("/", 1)[0] for c in cards})
    expls = [e for c in cards for e in c.explanations]
    n_scores = sum(len(e.scores) for e in expls)
    cut = sum(1 for e in expls if e.cut)
    pols = sorted({e.polarity for e in expls})
    parts = []
    if cards:
        parts.append(f"{len(cards)} neuron{'s' if len(cards) != 1 else ''} of {', '.join(layers)}")
        parts.append(
            f"{len(expls)} explanation{'s' if len(expls) != 1 else ''}"
            + (f" ({cut} cut off by the token budget)" if cut else "")
        )
        parts.append(f"{n_scores} score{'s' if n_scores != 1 else ''}")
        parts.append("polarity " + ", ".join(pols))
    usage = config.get("usage") or {}
    if isinstance(usage, dict) and usage.get("calls") is not None:
        parts.append(
            f"{usage['calls']} LLM calls, {usage.get('prompt_tokens', 0)} + {usage.get('completion_tokens', 0)} tokens"
        )
    return "; ".join(parts) + "." if parts else ""


def _paper_table(folder: Path) -> str:
    """vse's method table (uniform, the paper's protocol: best of N per cell, from methods.csv) beside the paper's."""
    note = NOTES.get(folder.name, ExperimentNote())
    if note.paper is None or not (folder / "methods.csv").is_file():
        return ""
    what, paper = note.paper
    with (folder / "methods.csv").open(encoding="utf-8", newline="") as f:
        vse = {(r["method"], r["target"]): r for r in csv.DictReader(f) if r.get("protocol") == Protocol.UNIFORM}
    methods = list(dict.fromkeys(m for m, _ in list(paper) + list(vse)))
    targets = list(dict.fromkeys(t for _, t in list(paper) + list(vse)))
    head = "".join(f"<th>{esc(t)}: vse</th><th>paper</th>" for t in targets)
    rows = []
    for m in methods:
        cells = []
        for t in targets:
            r = vse.get((m, t))
            v = (
                f"{float(r['best']):.2f}"
                + (f" ({float(r['mean']):.2f})" if r.get("mean") not in (None, "", r.get("best")) else "")
                if r
                else "–"
            )
            cells.append(f'<td class="num">{esc(v)}</td><td class="num">{esc(paper.get((m, t), "–"))}</td>')
        rows.append(f"<tr><td>{esc(m)}</td>{''.join(cells)}</tr>")
    return (
        f"<p>vse beside {esc(what)}: uniform protocol, each vse cell the mean over its neurons of the best of N "
        "(the mean of all N in brackets). Another network, LLM and probe set: "
        "compare which method wins where, not the level.</p>"
        f'<table class="paper"><thead><tr><th>method</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _section(folder: Path, source: atlas.PairSource, sink: atlas.ImageSink) -> tuple[str, list[Card]]:
    name = folder.name
    cards = experiment_cards(folder, source, sink)
    note = NOTES.get(name, ExperimentNote())
    question = note.question or _first_paragraph(folder)
    parts = [f'<section id="{esc(name)}">', f"<h2>{esc(name)}</h2>"]
    if question:
        parts.append(f'<p class="summary">{esc(question)}</p>')
    if note.docs:
        # The report lives in results/, the studies' texts in docs/ of the same clone.
        page = note.docs.split("#", 1)[0]
        parts.append(f'<p class="files">In full: <a href="{esc(DOCS_FROM_REPORT + note.docs)}">{esc(page)}</a></p>')
    facts = _facts(folder, cards)
    if facts:
        parts.append(f'<p class="facts">{esc(facts)}</p>')
    paper = _paper_table(folder)
    if paper:
        parts.append(paper)
    files = sorted(
        (p.name for p in folder.iterdir() if p.is_file()),
        key=lambda f: (LINKED_FIRST.index(f) if f in LINKED_FIRST else len(LINKED_FIRST), f),
    )
    links = [f for f in files if not f.endswith(".png")]
    if links:
        parts.append(
            '<p class="files">Files: '
            + " ".join(f'<a href="{esc(href(name, f))}">{esc(f)}</a>' for f in links)
            + "</p>"
        )
    cassettes = atlas.folder_config(folder).get("cassettes") or []
    if cassettes:
        parts.append(
            f"<details><summary>{len(cassettes)} cassette{'s' if len(cassettes) != 1 else ''} replayed</summary><ul>"
            + "".join(f"<li><code>{esc(c)}</code></li>" for c in cassettes)
            + "</ul></details>"
        )
    embedded: set = set()
    table = folder / "table.md"
    if table.is_file():
        parts.append(markdown_to_html(table.read_text(encoding="utf-8"), folder, name, embedded, fold_rows=FOLD_ROWS))
    if (folder / PLOT).is_file() and PLOT not in embedded:
        parts.append(f'<img class="plot" src="{esc(href(name, PLOT))}" alt="pass scores of {esc(name)}">')
    if cards:
        body = "\n".join(atlas.render_card(c, heading="h3", anchor=f"{name}/{c.slug}") for c in cards)
        opened = " open" if len(cards) <= OPEN_CARDS else ""
        parts.append(
            f'<details class="cards"{opened}><summary>{len(cards)} neuron card{"s" if len(cards) != 1 else ""}: '
            "explanations, scores, true vs simulated values, probe images</summary>\n" + body + "\n</details>"
        )
    parts.append("</section>")
    return "\n".join(parts), cards


def _render(results: Path) -> tuple[str, dict[str, bytes]]:
    results = Path(results)
    source, sink = atlas.PairSource(), atlas.ImageSink()
    folders = _experiments(results)
    sections = [_section(d, source, sink) for d in folders]
    toc = "".join(
        f'<li><a href="#{esc(quote(d.name))}">{esc(d.name)}</a>'
        f" ({len(cards)} neuron{'s' if len(cards) != 1 else ''})</li>"
        for d, (_, cards) in zip(folders, sections, strict=True)
    )
    body = "\n".join(s for s, _ in sections) or '<p class="note">No experiments found.</p>'
    index_cards = [c for _, cards in sections for c in cards]
    groups = [d.name for d, (_, cards) in zip(folders, sections, strict=True) for _ in cards]
    index = ""
    if index_cards:
        index = (
            '<details class="index"><summary>Index: every explanation of every experiment, sortable and searchable '
            "(click a neuron for its card)</summary>\n"
            + atlas.render_index(
                index_cards,
                href=lambda k, c: "#" + quote(f"{groups[k]}/{c.slug}"),
                title="Every explanation",
                groups=groups,
                heading="h2",
                intro="Click a column to sort, type to search, set a minimum score to filter.",
            )
            + "\n</details>"
        )
    intro = (
        '<p class="summary">Every table, card and image below is rebuilt from the committed fixtures and cassettes by '
        "<code>make reproduce</code>. Scores are 100 × Pearson's r between the simulated and the true values, "
        "± the 90% t-interval half-width, with the number of passes. "
        "Each neuron's card shows its explanations with their polarity ("
        + atlas.polarity_badge(Polarity.POSITIVE)
        + " "
        + atlas.polarity_badge(Polarity.NEGATIVE)
        + " "
        + atlas.polarity_badge(Polarity.BOTH)
        + "), explanations the token budget cut off marked "
        + atlas.cut_mark("cut off by the token budget")
        + ", the true vs simulated values of one pass, and the probe images "
        "(Tux Paint stamps, 48 px thumbnails; click to enlarge) with their captions and activations.</p>"
    )
    page = atlas.page(
        "vse results", "<h1>vse results</h1>\n" + intro + f'\n<ul class="toc">{toc}</ul>\n{index}\n{body}', css=CSS
    )
    return page, dict(sink.files)


def build_report(results: Path) -> str:
    """The HTML page for every experiment folder under ``results`` (see the module doc for the order)."""
    return _render(results)[0]


def report_files(results: Path) -> dict[str, bytes]:
    """``{"report.html": ..., "img/tuxpaint/0123.png": ...}``: the page and the thumbnails it shows, as paths
    relative to ``results`` for the caller to write."""
    page, images = _render(results)
    return {REPORT: page.encode("utf-8"), **images}
