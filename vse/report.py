"""Plots derived from results records (never hand-edited; rebuilt by every replay).

One figure per experiment: for every scored explanation, each simulation pass's score as a dot
and the mean with its 90% t-interval as a bar, so the spread Algorithm 1 fights is visible at a
glance. PNG bytes are deterministic for a given matplotlib (no timestamp, no software tag).
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from vse.atomic import write_atomic


def plot_scores(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(records, key=lambda r: (r["neuron"], r["target"], r["method"], r["explanation_seed"] if r["explanation_seed"] is not None else -1))
    fig, ax = plt.subplots(figsize=(9, 0.75 * len(rows) + 1.2))
    for y, r in enumerate(rows):
        ax.scatter(r["scores"], [y] * len(r["scores"]), s=12, color="0.6", zorder=2)
        ax.errorbar([r["mean"]], [y], xerr=[[r["half_width"]], [r["half_width"]]], fmt="o", color="C3" if r["method"] != "clip-dissect" else "C0", capsize=4, zorder=3)
    labels = [f"{r['method']} ({r['target']}): " + textwrap.shorten(r["explanation"], 60) for r in rows]
    ax.set_yticks(range(len(rows)), ["\n".join(textwrap.wrap(label, 55)) for label in labels], fontsize=7)
    ax.axvline(0, color="0.8", lw=1, zorder=1)
    ax.set_xlabel("correlation score per pass (dots) and mean ± 90% CI")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    # Rendered in memory, then renamed into place: a kill mid-write must not leave a 0-byte PNG.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    write_atomic(path, buf.getvalue())
