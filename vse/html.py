"""One self-contained HTML page over a results folder: every experiment's tables, its files, its
pass-score plot, and for every neuron it scored, the neuron's top-activating probe images beside its
explanations and their scores.

Self-contained = inline CSS, no scripts, no network; images and links are relative paths inside the
results folder, so ``results/report.html`` works when opened from disk (or from a copy of the folder).
The output is a pure function of the folder's content (sorted folders, no timestamps), so two replays
give the same bytes. :func:`report_files` also renders the top-image grids the page refers to; the
caller writes everything it returns under the results folder.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from urllib.parse import quote

from vse.targets import parse_neuron_id
from vse.vision import fixtures

REPORT = "report.html"
# Files the report links to, in this order, when the experiment folder has them; any other file in the
# folder is linked after them (sorted), except the PNGs the page shows and the grids this module writes.
LINKED_FIRST = ("table.md", "config.json", "results.jsonl", "summary.json", "explanations.jsonl")
# Per-neuron records: a table experiment's results.jsonl, or a study's neurons.jsonl (one record per
# explanation, target and protocol, "mean" = its score on its own neuron).
RECORD_FILES = ("results.jsonl", "neurons.jsonl")
GRID_PREFIX = "top-images-"
PLOT = "scores.png"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.1em; } h4 { font-size: 1em; margin-bottom: .3em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.files a { margin-right: 1em; } .toc li { margin: .15em 0; }
.neuron { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; margin: 1em 0 2em;
          padding-top: .5em; border-top: 1px dashed #ddd; }
.neuron img { max-width: 640px; width: 100%; height: auto; border: 1px solid #eee; }
.neuron .grid { flex: 0 1 640px; } .neuron .scores { flex: 1 1 380px; min-width: 300px; }
img.plot { max-width: 100%; height: auto; }
tr.best td { font-weight: 600; } .note { color: #666; font-size: .9em; }
code { background: #f4f4f4; padding: 0 .2em; }
"""


# -- names ------------------------------------------------------------------------------------
def grid_name(neuron: str) -> str:
    """The grid's file name inside an experiment folder: ``top-images-<model>__<layer>__<unit>.png``."""
    model, layer, index = parse_neuron_id(neuron)
    return f"{GRID_PREFIX}{model}__{layer}__{index}.png"


def _href(*parts: str) -> str:
    return "/".join(quote(p) for p in parts)


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def has_images(neuron: str) -> bool:
    """Whether the committed fixtures hold probe images and activations for the neuron's layer."""
    try:
        model, layer, index = parse_neuron_id(neuron)
    except ValueError:
        return False
    if model != fixtures.DEFAULT_MODEL:
        return False
    try:
        acts, _ = fixtures.load_activations(layer)
        fixtures.load_thumbnail(0)
    except FileNotFoundError:
        return False
    return index < acts.shape[1]


# -- a tiny Markdown subset: `| a | b |` tables, `#` headings, links and images, paragraphs ---------------
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str, folder: Path | None, prefix: str, embedded: set) -> str:
    """Escape ``text``; ``[t](href)`` / ``![alt](src)`` become a link / image when the target is a file in
    ``folder`` (so the page never points at a missing file), else they stay as text."""
    out, pos = [], 0
    for m in _LINK.finditer(text):
        out.append(_code(text[pos:m.start()]))
        bang, label, target = m.groups()
        if folder is not None and "/" not in target and (folder / target).is_file():
            if bang:
                embedded.add(target)
                out.append(f'<img class="plot" src="{_esc(_href(prefix, target))}" alt="{_esc(label)}">')
            else:
                out.append(f'<a href="{_esc(_href(prefix, target))}">{_esc(label)}</a>')
        else:
            out.append(_code(m.group(0)))
        pos = m.end()
    out.append(_code(text[pos:]))
    return "".join(out)


def _code(text: str) -> str:
    parts = _CODE.split(text)  # odd items are inside backticks
    return "".join(f"<code>{_esc(p)}</code>" if i % 2 else _esc(p) for i, p in enumerate(parts))


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def markdown_to_html(text: str, folder: Path | None = None, prefix: str = "", embedded: set | None = None) -> str:
    """The Markdown of a ``table.md``: tables (a ``| a | b |`` header, a ``|---|`` separator, rows) become
    ``<table>``; ``#`` lines headings (two levels down, under the experiment's own heading); other
    lines paragraphs (consecutive lines joined). Everything is escaped. Links and images resolve
    relative to ``folder`` and are written with the path ``prefix`` (see :func:`_inline`)."""
    embedded = set() if embedded is None else embedded
    lines = text.splitlines()
    out, para, i = [], [], 0

    def flush():
        if para:
            out.append("<p>" + " ".join(_inline(p, folder, prefix, embedded) for p in para) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]):
            flush()
            head = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            th = "".join(f"<th>{_inline(c, folder, prefix, embedded)}</th>" for c in head)
            trs = "".join("<tr>" + "".join(f"<td>{_inline(c, folder, prefix, embedded)}</td>" for c in r) + "</tr>\n"
                          for r in rows)
            out.append(f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}</tbody>\n</table>")
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            flush()
            level = min(6, len(heading.group(1)) + 2)
            out.append(f"<h{level}>{_inline(heading.group(2), folder, prefix, embedded)}</h{level}>")
        elif line.strip():
            para.append(line.strip())
        else:
            flush()
        i += 1
    flush()
    return "\n".join(out)


# -- records ----------------------------------------------------------------------------------
def read_records(path: Path) -> list[dict]:
    """The JSON objects of a results.jsonl that name a neuron (other lines are ignored)."""
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
        if isinstance(rec, dict) and isinstance(rec.get("neuron"), str):
            records.append(rec)
    return records


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _score(rec: dict) -> str:
    mean, hw = _num(rec.get("mean")), _num(rec.get("half_width"))
    if mean is None:
        return "failed" if rec.get("failure") or rec.get("error") else "–"
    text = f"{mean:.2f}" + (f" ± {hw:.2f}" if hw is not None else "")
    passes = rec.get("passes")
    if passes is not None:
        text += f" ({passes}{', cap' if rec.get('hit_cap') else ''})"
    return text


def _target(rec: dict) -> str:
    """The target column: a study's records also name the protocol their items follow."""
    return str(rec.get("target", "")) + (f" ({rec['protocol']})" if rec.get("protocol") else "")


def _scores_table(records: list[dict]) -> str:
    """One row per record of the neuron, sorted by (target, method, score high first); the best
    explanation per (method, target), the paper's best of N, in bold."""
    best: dict[tuple, int] = {}
    for k, r in enumerate(records):
        key, m = (r.get("method"), _target(r)), _num(r.get("mean"))
        if m is not None and (key not in best or m > _num(records[best[key]].get("mean"))):
            best[key] = k
    def key(k):
        m = _num(records[k].get("mean"))
        return (_target(records[k]), str(records[k].get("method")), -m if m is not None else math.inf, k)

    order = sorted(range(len(records)), key=key)
    rows = []
    for k in order:
        r = records[k]
        cls = ' class="best"' if best.get((r.get("method"), _target(r))) == k else ""
        rows.append(f"<tr{cls}><td>{_esc(_target(r))}</td><td>{_esc(r.get('method', ''))}</td>"
                    f"<td>{_esc(r.get('explanation', ''))}</td><td class=\"num\">{_esc(_score(r))}</td></tr>")
    return ("<table>\n<thead><tr><th>target</th><th>method</th><th>explanation</th>"
            "<th>score ± 90% CI (passes)</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>")


# -- the page ---------------------------------------------------------------------------------
def _experiments(results: Path) -> list[Path]:
    return sorted((d for d in Path(results).iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _records(folder: Path) -> list[dict]:
    for name in RECORD_FILES:
        if (folder / name).is_file():
            return read_records(folder / name)
    return []


def _neurons(folder: Path) -> list[str]:
    return list(dict.fromkeys(r["neuron"] for r in _records(folder)))


def _section(folder: Path) -> str:
    name = folder.name
    parts = [f'<section id="{_esc(name)}">', f"<h2>{_esc(name)}</h2>"]
    files = sorted((p.name for p in folder.iterdir() if p.is_file()),
                   key=lambda f: (LINKED_FIRST.index(f) if f in LINKED_FIRST else len(LINKED_FIRST), f))
    links = [f for f in files if not f.startswith(GRID_PREFIX) and not f.endswith(".png")]
    if links:
        parts.append('<p class="files">Files: ' + " ".join(f'<a href="{_esc(_href(name, f))}">{_esc(f)}</a>' for f in links) + "</p>")
    embedded: set = set()
    table = folder / "table.md"
    if table.is_file():
        parts.append(markdown_to_html(table.read_text(encoding="utf-8"), folder, name, embedded))
    if (folder / PLOT).is_file() and PLOT not in embedded:
        parts.append(f'<img class="plot" src="{_esc(_href(name, PLOT))}" alt="pass scores of {_esc(name)}">')
    records = _records(folder)
    neurons = list(dict.fromkeys(r["neuron"] for r in records))
    if neurons:
        parts.append("<h3>Neurons: top-activating probe images and explanations</h3>")
    for neuron in neurons:
        own = [r for r in records if r["neuron"] == neuron]
        if has_images(neuron):
            grid = (f'<div class="grid"><img src="{_esc(_href(name, grid_name(neuron)))}" '
                    f'alt="top-activating probe images of {_esc(neuron)}"></div>')
        else:
            grid = '<div class="grid"><p class="note">No probe-image fixtures for this layer.</p></div>'
        parts.append(f'<div class="neuron" id="{_esc(name + "/" + neuron)}">{grid}<div class="scores">'
                     f"<h4>{_esc(neuron)}</h4>\n{_scores_table(own)}</div></div>")
    parts.append("</section>")
    return "\n".join(parts)


def build_report(results: Path) -> str:
    """The HTML page for every experiment folder under ``results`` (sorted by name)."""
    results = Path(results)
    folders = _experiments(results)
    toc = "".join(f'<li><a href="#{_esc(quote(d.name))}">{_esc(d.name)}</a></li>' for d in folders)
    body = "\n".join(_section(d) for d in folders) or '<p class="note">No experiments found.</p>'
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>vse results</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            "<h1>vse results</h1>\n"
            "<p>Every table, plot and figure below is rebuilt from the committed fixtures and cassettes by "
            "<code>make reproduce</code>. Scores are 100 × Pearson's r between the simulated and the true values, "
            "± the 90% t-interval half-width, with the number of simulation passes; bold = the best of N per method "
            "and target. Each grid shows the probe images (Tux Paint stamps) the neuron responds to most, as the "
            "model saw them, with their captions and activations.</p>\n"
            f"<ul class=\"toc\">{toc}</ul>\n{body}\n</body>\n</html>\n")


def report_files(results: Path) -> dict[str, bytes]:
    """``{"report.html": ..., "<exp>/top-images-<model>__<layer>__<unit>.png": ...}``: the page and the
    grids it shows, as paths relative to ``results`` for the caller to write."""
    from vse.figures import top_images_grid

    results = Path(results)
    files = {REPORT: build_report(results).encode("utf-8")}
    grids: dict[str, bytes] = {}
    for folder in _experiments(results):
        for neuron in _neurons(folder):
            if has_images(neuron):
                if neuron not in grids:
                    grids[neuron] = top_images_grid(neuron)
                files[f"{folder.name}/{grid_name(neuron)}"] = grids[neuron]
    return files
