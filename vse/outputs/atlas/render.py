"""Cards as HTML: one card (`render_card`), the sortable index of many (`render_index`) and the page
around them (`page`). The style and the script are files under ``vse/outputs/assets/`` (`asset`),
shared with the results report, which adds its own ``report.css``."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from importlib import resources

from vse.core.target import parse_neuron_id
from vse.core.vocab import Kind, Mode, Polarity
from vse.outputs.atlas.cards import Card, Dead, Explanation, Item, Score, Unscored


def asset(name: str) -> str:
    """The text of ``vse/outputs/assets/NAME``, read as bytes so no newline is translated on the way."""
    return resources.files("vse.outputs").joinpath("assets", name).read_bytes().decode("utf-8")


# The pages have always opened their style and script on a line of their own: the newline keeps
# the committed report and the atlas pages byte for byte what they were when these were inline.
CSS = "\n" + asset("atlas.css")
# One script for the index (sort, search, filter, URL fragment) and the cards (click to enlarge).
# No network, no libraries; the page works without it (rows, cards and image links stay usable).
SCRIPT = "\n" + asset("atlas.js")


def esc(text) -> str:
    """Any value as HTML text or attribute (quotes escaped too): the one escape of the atlas and the report."""
    return html.escape(str(text), quote=True)


def score_text(s: Score) -> str:
    if s.mean is None:
        return "failed"
    text = f"{s.mean:.2f}"
    if s.half_width is not None:
        text += f" ± {s.half_width:.2f}"
    if s.passes is not None:
        text += f" ({s.passes}{', cap' if s.hit_cap else ''})"
    return text


def chosen_note(e: Explanation) -> str:
    """Why best of N kept ``e``, per target it was chosen on: its held-in score against the candidates it beat."""
    out = []
    for s in e.scores:
        c = s.chosen
        if c is None:
            continue
        others = ", ".join(f"{x:.2f}" for x in c.beaten)
        out.append(
            f'<p class="note chosen" data-target="{esc(s.column)}"><b>{esc(e.method)}</b> on <b>{esc(s.column)}</b>: '
            f"chosen from {len(c.beaten) + 1} candidates by its score on {c.held_in_items} held-in items, "
            f"{c.held_in:.2f} against {esc(others)}; the score shown is on the other {c.held_out_items} items "
            "(held out, never used to choose).</p>"
        )
    return "\n".join(out)


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


def dead_mark(dead: Dead | None) -> str:
    """The badge of a dead unit (constant values: nothing explained, nothing scored), "" otherwise."""
    return f'<mark class="dead" title="{esc(dead.text)}">dead</mark>' if dead else ""


def unscorable_mark(unscorable: Unscored | None) -> str:
    """The badge of a unit explained but not scorable (the protocol had nothing to correlate), "" otherwise."""
    return f'<mark class="unscorable" title="{esc(unscorable.text)}">unscorable</mark>' if unscorable else ""


def _strip(title: str, items: Sequence[Item], prefix: str, small: bool) -> str:
    figs = []
    for it in items:
        cap = f"{it.text} — activation {it.value:.3f}"
        img = (
            (
                f'<a class="zoom" href="{esc(prefix + (it.full or it.image))}" data-caption="{esc(cap)}">'
                f'<img{" class=small" if small else ""} src="{esc(prefix + it.image)}" alt="{esc(it.text)}"'
                ' loading="lazy" width="128" height="128"></a>'
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


def cosine_axis(s: Score) -> tuple[float, float] | None:
    """The own axis of a score's predictions, (low, high), when they are not 0..10 values: the embedding
    simulator's are cosines (about -0.2..0.8), flat on a 0..10 axis, so they are drawn over their own
    min..max. None for an LLM simulator's predictions, which share the true values' axis."""
    if s.simulator != Mode.EMBEDDING:
        return None
    predicted = [it.predicted for it in s.items] or [0.0]
    return min(predicted), max(predicted)


def sim_plot(s: Score) -> str:
    """One pass's items, sorted by their true value: true (blue) and simulated (orange) bars, as inline SVG.

    LLM predictions share the true values' 0..10 axis. Cosine predictions (`cosine_axis`) get their own axis,
    labelled on the right with its range, and the ``<svg>`` names both axes (``data-true-axis``,
    ``data-sim-axis``, ``data-sim-range``) for whoever reads the page."""
    items = sorted(s.items, key=lambda it: (-it.true, it.index))
    cosine = cosine_axis(s)
    signed = any(it.true < 0 or (cosine is None and it.predicted < 0) for it in items)
    lo, hi = (-10.0, 10.0) if signed else (0.0, 10.0)
    w_item, h, pad = 10, 120, 4
    right = 40 if cosine else 0  # room for the cosine axis's labels
    width = pad * 2 + w_item * len(items) + right

    def y(v: float) -> float:
        return pad + (h - 2 * pad) * (hi - max(lo, min(hi, v))) / (hi - lo)

    y0 = y(0.0)
    if cosine is None:
        parts = [
            f'<svg class="simplot" role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
            f'aria-label="true vs simulated values of {len(items)} items">',
        ]
    else:
        c_lo, c_hi = cosine
        span = (c_hi - c_lo) or 1.0
        x_axis = width - right
        parts = [
            f'<svg class="simplot" role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
            f'data-true-axis="{lo:g}..{hi:g}" data-sim-axis="cosine" data-sim-range="{c_lo:.4f} {c_hi:.4f}" '
            f'aria-label="true values ({lo:g}..{hi:g}) and cosine predictions (own axis, {c_lo:.2f}..{c_hi:.2f}) '
            f'of {len(items)} items">',
            f'<line x1="{x_axis}" x2="{x_axis}" y1="{pad}" y2="{h - pad}" stroke="var(--sim)" stroke-width="1"/>',
            f'<text x="{x_axis + 3}" y="{pad + 8}" font-size="9">{c_hi:.2f}</text>',
            f'<text x="{x_axis + 3}" y="{h / 2 + 3:.1f}" font-size="9">cosine</text>',
            f'<text x="{x_axis + 3}" y="{h - pad}" font-size="9">{c_lo:.2f}</text>',
        ]
    parts.append(
        f'<line x1="{pad}" x2="{width - pad - right}" y1="{y0:.1f}" y2="{y0:.1f}" stroke="#999" stroke-width="0.5"/>'
    )
    for k, it in enumerate(items):
        x = pad + k * w_item
        tip = esc(it.text or "#" + str(it.index))
        top, bot = sorted((y(it.true), y0))
        parts.append(
            f'<rect x="{x}" y="{top:.1f}" width="4" height="{max(bot - top, 0.5):.1f}" fill="var(--true)">'
            f"<title>{tip}: true {it.true:g}, {'cosine' if cosine else 'simulated'} {it.predicted:.2f}</title></rect>"
        )
        if cosine is None:
            top, bot = sorted((y(it.predicted), y0))
        else:  # from the bottom of the cosine axis (its minimum) up to the value
            top, bot = pad + (h - 2 * pad) * (c_hi - it.predicted) / span, float(h - pad)
        parts.append(
            f'<rect x="{x + 4}" y="{top:.1f}" width="4" height="{max(bot - top, 0.5):.1f}" fill="var(--sim)">'
            f"<title>{tip}: true {it.true:g}, {'cosine' if cosine else 'simulated'} {it.predicted:.2f}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _sim_section(e: Explanation) -> str:
    out = []
    for s in e.scores:
        if not s.items:
            continue
        cosine = cosine_axis(s)
        sim = "cosine" if cosine else "simulated"
        rows = "".join(
            f'<tr><td>{esc(it.text or "#" + str(it.index))}</td><td class="num">{it.true:g}</td>'
            f'<td class="num">{it.predicted:.2f}</td></tr>'
            for it in sorted(s.items, key=lambda it: (-it.true, it.index))
        )
        # The LLM simulator's plot keeps its legend; a cosine plot names both of its axes.
        legend = "true" if cosine is None else "true 0..10 (left axis)"
        sim_legend = "simulated" if cosine is None else f"cosine (right axis, {cosine[0]:.2f}..{cosine[1]:.2f})"
        out.append(
            f'<div class="sim" data-target="{esc(s.column)}"><p>'
            f"<b>{esc(e.method)}</b> on <b>{esc(s.column)}</b>: score {esc(score_text(s))}. "
            f"Pass 1 of {s.n_passes_kept}, {len(s.items)} items, sorted by the true value:"
            '<span class="legend"><span style="background:var(--true)"></span>'
            f'{legend}<span style="background:var(--sim)"></span>{sim_legend}</span></p>'
            f"{sim_plot(s)}<details><summary>the items</summary>"
            '<table><thead><tr><th>item</th><th class="num">true</th>'
            f'<th class="num">{sim}</th></tr></thead><tbody>{rows}</tbody></table></details></div>'
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
        f'<article class="card" id="{esc(anchor or card.slug)}" data-neuron="{esc(card.neuron)}"'
        f' data-polarity="{esc(" ".join(pols))}">',
        f"<header><{heading}>{title}</{heading}>"
        + " ".join(
            [
                *(polarity_badge(p) for p in pols),
                *([dead_mark(card.dead)] if card.dead else []),
                *([unscorable_mark(card.unscorable)] if card.unscorable else []),
            ]
        )
        + "</header>",
    ]
    if card.dead:
        parts.append(f'<p class="note dead">{esc(card.dead.text)} ({esc(card.dead.method)} explained nothing)</p>')
    if card.unscorable:
        parts.append(f'<p class="note unscorable">{esc(card.unscorable.text)} (its explanations are kept)</p>')
    columns = sorted({s.column for e in card.explanations for s in e.scores})
    head = "".join(f'<th class="num score" title="{esc(c)}">{column_head(c)}</th>' for c in columns)
    rows = []
    for e in card.explanations:
        by = {s.column: s for s in e.scores}
        cells = "".join(f'<td class="num">{esc(score_text(by[c])) if c in by else ""}</td>' for c in columns)
        rows.append(
            f'<tr data-method="{esc(e.method)}"><td class="method">{esc(e.method)}</td>'
            f"<td>{polarity_badge(e.polarity)}</td>"
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
            '<p class="note">Scores: 100 × Pearson r of simulated vs true values'
            " ± the 90% t-interval half-width (passes).</p>"
        )
    parts += [x for x in (chosen_note(e) for e in card.explanations) if x]
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
        if card.dead:  # no explanation to list: one row that says why, "dead" in every score column
            rows.append(
                f'<tr data-neuron="{esc(card.neuron)}" data-dead="1">{group}'
                f'<td><a href="{link}">{esc(card.neuron)}</a></td><td class="num" data-v="{unit}">{unit}</td>'
                f'<td></td><td class="method">{esc(card.dead.method)}</td>'
                f'<td class="text">{dead_mark(card.dead)} {esc(card.dead.reason)}</td>'
                + "".join('<td class="num" data-v="">dead</td>' for _ in cols)
                + "</tr>"
            )
        unscored = f" {unscorable_mark(card.unscorable)}" if card.unscorable else ""
        for e in card.explanations:
            by = {s.column: s for s in e.scores}
            cells = []
            for c in cols:
                s = by.get(c)
                v = "" if s is None or s.mean is None else f"{s.mean:.4f}"
                cells.append(f'<td class="num" data-v="{v}">{"" if s is None else esc(score_text(s))}</td>')
            rows.append(
                f'<tr data-neuron="{esc(card.neuron)}">{group}<td><a href="{link}">{esc(card.neuron)}</a></td>'
                f'<td class="num" data-v="{unit}">{unit}</td><td>{esc(e.polarity)}</td>'
                f'<td class="method">{esc(e.method)}</td>'
                f'<td class="text">{esc(e.text)}{cut_mark(e.cut)}{unscored}</td>' + "".join(cells) + "</tr>"
            )
    options = '<option value="">any score column</option>' + "".join(
        f'<option value="score-{k}">{esc(c)}</option>' for k, c in enumerate(cols)
    )
    n_units = len({c.neuron for c in cards})  # a neuron in several experiments counts once
    n_expl = sum(len(c.explanations) for c in cards)
    n_dead = len({c.neuron for c in cards if c.dead})
    dead = f", {n_dead} dead (constant values: nothing explained)" if n_dead else ""
    n_unscorable = len({c.neuron for c in cards if c.unscorable})
    if n_unscorable:
        dead += f", {n_unscorable} unscorable (explained; the protocol had nothing to correlate)"
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
        f"<{heading}>{esc(title)}</{heading}>\n"
        f'<p class="summary">{n_units} units, {n_expl} explanations{dead}. {intro}</p>\n'
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
