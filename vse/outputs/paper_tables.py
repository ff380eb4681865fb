"""The paper's method and neuron tables, read from a study's pool predictions (no LLM call of their own).

A study (vse.studies.matched) predicts every explanation once on each target's shared item pool. Here each
explanation is scored on its own neuron under two item sets of that pool (vse.core.discrimination.item_sets):
- ``uniform``, the paper's protocol: the pool's random items, a uniform sample of the whole list;
- ``top-and-random-heldout``, the protocol the power study found to discriminate: the neuron's
  odd top ranks (never shown to the explainer) plus the random items it was not shown.
Per explanation we keep Corr (100 x Pearson), Acc (share of rounded predictions equal to the true
integer 0..10), MSE and MAE (on the 0..10 scale), the paper's Table 2 columns.

Tables derived from those rows:
- the method table (the paper's Tables 1, 8, 9): methods as rows, targets as columns, each cell
  the mean over neurons of the best of the N explanations' Corr (best chosen per column, as the
  paper reports the highest scoring of its explanations), then the mean of all N beside it,
  because a best of N on a noisy score is biased upwards;
- the neuron table (the paper's Table 2): one method on one target, each neuron's explanation
  (its best of N) with Corr, Acc, MSE, MAE, and the average row.
Every number is computed from committed predictions, so it traces to the study's cassettes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

import numpy as np

from vse.core import exact
from vse.core.stats import accuracy, correlation_score, mae, mse
from vse.core.vocab import Protocol
from vse.outputs.figures import png_bytes

#: The item sets each explanation is scored on, and the attribute of `ItemSets` holding them.
PROTOCOL_SETS = {Protocol.UNIFORM: "uniform", Protocol.TOP_AND_RANDOM_HELDOUT: "heldout"}


@dataclass(frozen=True)
class ExplanationScore:
    """One explanation of one neuron, scored on one target under one protocol.

    unit, method, index: which neuron, which method, which of its N explanations (0-based).
    explanation: the text. target, protocol: what was scored and on which items.
    n_items: the items scored. corr: 100 x Pearson. acc: share of exact (rounded) predictions.
    mse, mae: errors of the predictions on the 0..10 scale.
    """

    unit: int
    method: str
    index: int
    explanation: str
    target: str
    protocol: str
    n_items: int
    corr: float
    acc: float
    mse: float
    mae: float

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def score_rows(
    unit: int, method: str, index: int, explanation: str, target: str, predicted, true, sets
) -> list[ExplanationScore]:
    """The rows of one explanation on its own neuron: `predicted`/`true` over the pool, `sets` its ItemSets."""
    p, t = np.asarray(predicted, dtype=float), np.asarray(true, dtype=float)
    rows = []
    for protocol, attr in PROTOCOL_SETS.items():
        idx = getattr(sets, attr)
        rows.append(
            ExplanationScore(
                unit,
                method,
                index,
                explanation,
                target,
                protocol,
                len(idx),
                correlation_score(p[idx], t[idx]),
                accuracy(np.rint(p[idx]), t[idx]),
                mse(p[idx], t[idx]),
                mae(p[idx], t[idx]),
            )
        )
    return rows


def best_of_n(rows: list[ExplanationScore]) -> dict[tuple[int, str, str, str], ExplanationScore]:
    """(unit, method, target, protocol) -> the row with the highest Corr (the first on ties)."""
    best: dict[tuple[int, str, str, str], ExplanationScore] = {}
    for r in rows:
        key = (r.unit, r.method, r.target, r.protocol)
        if key not in best or r.corr > best[key].corr:
            best[key] = r
    return best


@dataclass(frozen=True)
class MethodCell:
    """One cell of the method table: a method on a target under a protocol, over neurons.

    best: mean over neurons of the best of N Corr. mean: mean over neurons and all N.
    n_neurons, n_explanations: how many were averaged (n_explanations per neuron, at most).
    """

    method: str
    target: str
    protocol: str
    best: float
    mean: float
    n_neurons: int
    n_explanations: int


def method_cells(rows: list[ExplanationScore]) -> list[MethodCell]:
    best = best_of_n(rows)
    cells = []
    keys = sorted(
        {(r.method, r.target, r.protocol) for r in rows},
        key=lambda k: (_order(rows, "method", k[0]), _order(rows, "target", k[1]), _order(rows, "protocol", k[2])),
    )
    for method, target, protocol in keys:
        mine = [r for r in rows if (r.method, r.target, r.protocol) == (method, target, protocol)]
        units = sorted({r.unit for r in mine})
        b = [best[(u, method, target, protocol)].corr for u in units]
        n = max(sum(1 for r in mine if r.unit == u) for u in units)
        cells.append(
            MethodCell(method, target, protocol, exact.mean(b), exact.mean([r.corr for r in mine]), len(units), n)
        )
    return cells


def _order(rows: list[ExplanationScore], field: str, value: str) -> int:
    """First-appearance order, so tables keep the study's order of methods and targets."""
    seen: list[str] = []
    for r in rows:
        v = getattr(r, field)
        if v not in seen:
            seen.append(v)
    return seen.index(value)


def method_table(rows: list[ExplanationScore], protocol: str) -> str:
    """Markdown: methods x targets, "best of N (mean of N)" averaged over neurons."""
    cells = [c for c in method_cells(rows) if c.protocol == protocol]
    methods = list(dict.fromkeys(c.method for c in cells))
    targets = list(dict.fromkeys(c.target for c in cells))
    at = {(c.method, c.target): c for c in cells}
    head = "| method | " + " | ".join(targets) + " |\n|---|" + "---|" * len(targets) + "\n"
    body = ""
    for m in methods:
        n = max(at[(m, t)].n_explanations for t in targets if (m, t) in at)
        label = f"{m} (best of {n})" if n > 1 else m
        body += (
            f"| {label} | "
            + " | ".join(f"{at[(m, t)].best:.2f} ({at[(m, t)].mean:.2f})" if (m, t) in at else "-" for t in targets)
            + " |\n"
        )
    return head + body


def neuron_table(rows: list[ExplanationScore], method: str, target: str, protocol: str = Protocol.UNIFORM) -> str:
    """Markdown: the paper's Table 2 for `method` on `target`: per neuron, its best of N."""
    best = best_of_n(rows)
    picked = [best[k] for k in sorted(best) if k[1:] == (method, target, protocol)]
    if not picked:
        return ""
    head = "| neuron | Corr. | Acc. | MSE | MAE |\n|---|---|---|---|---|\n"
    body = "".join(f"| {r.unit} | {r.corr:.2f} | {100 * r.acc:.0f}% | {r.mse:.2f} | {r.mae:.2f} |\n" for r in picked)
    avg = (
        f"| Avg. | {exact.mean([r.corr for r in picked]):.2f} | {100 * exact.mean([r.acc for r in picked]):.2f}% "
        f"| {exact.mean([r.mse for r in picked]):.2f} | {exact.mean([r.mae for r in picked]):.2f} |\n"
    )
    return head + body + avg


def to_csv(records: list[dict]) -> str:
    """CSV with the keys of the first record as columns ("\\n" line ends on every platform)."""
    if not records:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def cells_csv(rows: list[ExplanationScore]) -> str:
    return to_csv(
        [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(c).items()} for c in method_cells(rows)]
    )


def rows_csv(rows: list[ExplanationScore]) -> str:
    return to_csv([r.to_json() for r in rows])


def render_explanation_scores(rows: list[ExplanationScore], title: str) -> bytes:
    """Every explanation's score per (method, target) as dots, one panel per protocol; the best of
    N per neuron ringed. PNG bytes (the caller writes them with the rest of the result set)."""
    # matplotlib is imported here, not at the top, so that `vse --help` stays fast.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(r.protocol for r in rows))
    keys = list(dict.fromkeys((r.method, r.target) for r in rows))
    units = sorted({r.unit for r in rows})
    best = set(id(r) for r in best_of_n(rows).values())
    fig, axes = plt.subplots(
        1, len(protocols), figsize=(5.5 * len(protocols), 0.32 * len(keys) + 1.6), sharey=True, squeeze=False
    )
    for ax, protocol in zip(axes[0], protocols, strict=True):
        for c, unit in enumerate(units):
            # One scatter per unit (dots) and one for its best of N (rings): few artists, fast to draw.
            mine = [r for r in rows if (r.protocol, r.unit) == (protocol, unit)]
            ys = [keys.index((r.method, r.target)) + 0.12 * (c - (len(units) - 1) / 2) for r in mine]
            ax.scatter([r.corr for r in mine], ys, s=14, color=f"C{c}", label=f"unit {unit}", zorder=2)
            ringed = [(r.corr, y) for r, y in zip(mine, ys, strict=True) if id(r) in best]
            ax.scatter(
                [x for x, _ in ringed], [y for _, y in ringed], s=60, facecolors="none", edgecolors=f"C{c}", zorder=3
            )
        ax.axvline(0, color="0.8", lw=1, zorder=1)
        ax.set_title(protocol, fontsize=9)
        ax.set_xlabel("correlation score of each explanation on its own neuron")
    axes[0][0].set_yticks(range(len(keys)), [f"{m} -> {t}" for m, t in keys], fontsize=7)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title + " (ringed: best of N per neuron)", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)
