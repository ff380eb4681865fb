"""The best-of tables and the pass-score plot of a table experiment, derived from its score records
(never hand-edited; rebuilt by every replay). The HTML report over all results is `vse.outputs.report`.

Plot: for every scored explanation, each simulation pass's score as a dot and the mean with its
90% t-interval as a bar, so the spread Algorithm 1 fights is visible at a glance. PNG bytes are
deterministic for a given matplotlib (no timestamp, no software tag).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from vse.core.vocab import Method
from vse.method.prompts import EXPLANATION_PREFIX
from vse.method.records import ScoreRecord
from vse.outputs.figures import png_bytes


def best_of(records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
    """Per (neuron, method, target) the best-scoring explanation (the paper's best of N)."""
    best: dict[tuple, ScoreRecord] = {}
    for r in records:
        key = (r.neuron, r.method, r.target)
        if key not in best or r.mean > best[key].mean:
            best[key] = r
    return list(best.values())


def _cell(r: ScoreRecord | None) -> str:
    return "" if r is None else f"{r.mean:.2f} ± {r.half_width:.2f} ({r.passes}{', cap' if r.hit_cap else ''})"


def best_of_table(records: Sequence[ScoreRecord]) -> str:
    """One row per (neuron, method): the best explanation's score on each target (Table 1's layout)."""
    targets = list(dict.fromkeys(r.target for r in records))
    head = (
        "| neuron | method | explanation | "
        + " | ".join(f"{t} score (±90% CI, passes)" for t in targets)
        + " | Acc | MSE | MAE |"
    )
    lines = [head, "|" + "---|" * (len(targets) + 6)]
    rows: dict[tuple, dict[str, ScoreRecord]] = {}
    for r in best_of(records):
        rows.setdefault((r.neuron, r.method), {})[r.target] = r
    for (neuron, method), by_target in rows.items():
        first = by_target.get(targets[0]) or next(iter(by_target.values()))
        cells = " | ".join(_cell(by_target.get(t)) for t in targets)
        lines.append(
            f"| {neuron} | {method} | {EXPLANATION_PREFIX} {first.explanation} | {cells} "
            f"| {100 * first.accuracy:.1f}% | {first.mse:.2f} | {first.mae:.2f} |"
        )
    return "\n".join(lines) + "\n"


def all_explanations_table(records: Sequence[ScoreRecord]) -> str:
    """Every scored explanation, not only the best: best of N picks the luckiest of overlapping intervals."""
    lines = [
        "| neuron | method | seed | target | explanation | score ± 90% CI | passes | scores per pass | calls |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        seed = "" if r.explanation_seed is None else r.explanation_seed
        scores = ", ".join(f"{s:.1f}" for s in r.scores)
        lines.append(
            f"| {r.neuron} | {r.method} | {seed} | {r.target} | {r.explanation} "
            f"| {r.mean:.2f} ± {r.half_width:.2f} | {r.passes}{' (cap)' if r.hit_cap else ''} | {scores} | {r.calls} |"
        )
    return "\n".join(lines) + "\n"


def render_scores(records: Sequence[ScoreRecord], title: str) -> bytes:
    """The pass-score plot as PNG bytes (written by the caller, with the rest of a result set)."""
    import matplotlib  # here, not at the top: `vse --help` must not load matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(
        records,
        key=lambda r: (r.neuron, r.target, r.method, r.explanation_seed if r.explanation_seed is not None else -1),
    )
    fig, ax = plt.subplots(figsize=(9, 0.75 * len(rows) + 1.2))
    for y, r in enumerate(rows):
        ax.scatter(r.scores, [y] * len(r.scores), s=12, color="0.6", zorder=2)
        ax.errorbar(
            [r.mean],
            [y],
            xerr=[[r.half_width], [r.half_width]],
            fmt="o",
            color="C3" if r.method != Method.CLIP_DISSECT else "C0",
            capsize=4,
            zorder=3,
        )
    labels = [f"{r.method} ({r.target}): " + textwrap.shorten(r.explanation, 60) for r in rows]
    ax.set_yticks(range(len(rows)), ["\n".join(textwrap.wrap(label, 55)) for label in labels], fontsize=7)
    ax.axvline(0, color="0.8", lw=1, zorder=1)
    ax.set_xlabel("correlation score per pass (dots) and mean ± 90% CI")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    return png_bytes(fig)
