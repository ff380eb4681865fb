"""Figures from the committed fixtures: a neuron's top-activating probe images in a grid (the paper's
Figures 1, 4 and 11), each with its caption and activation.

Reads only fixtures (activations, probe.json, the thumbnails atlas): no torch, no network. PNG bytes are
deterministic for a given matplotlib and Pillow (Agg, fixed size and dpi, no Software tag).
"""

from __future__ import annotations

import io
import textwrap

import numpy as np

from vse.core.target import parse_neuron_id
from vse.vision import fixtures

GRID_COLUMNS = 6
CAPTION_CHARS = 40  # captions are shortened to this many characters, on two lines at most


def top_images(neuron: str, n: int = 12, root=None) -> list[dict]:
    """The neuron's ``n`` top-activating probe images, highest first (ties: probe order):
    ``{"row", "id", "caption", "activation"}``, ``row`` = the row in the activations and the atlas."""
    model, layer, index = parse_neuron_id(neuron)
    if model != fixtures.DEFAULT_MODEL:
        raise ValueError(f"{neuron}: probe-image fixtures exist only for {fixtures.DEFAULT_MODEL}, not {model}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    acts, ids = fixtures.load_activations(layer, root=root)
    if index >= acts.shape[1]:
        raise ValueError(f"{neuron}: layer {layer} has {acts.shape[1]} units (0..{acts.shape[1] - 1})")
    column = acts[:, index]
    order = np.argsort(-column, kind="stable")[:n]
    probe = fixtures.load_probe(root=root)
    return [
        {"row": int(r), "id": ids[r], "caption": probe[r]["caption"], "activation": float(column[r])} for r in order
    ]


def _caption(text: str) -> str:
    return "\n".join(textwrap.wrap(textwrap.shorten(text, CAPTION_CHARS, placeholder="…"), 22)[:2])


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes, closed; no software/date metadata, so replays give the same bytes."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def top_images_grid(neuron: str, n: int = 12, root=None) -> bytes:
    """PNG bytes: the neuron's ``n`` top-activating probe images in a grid, caption (shortened) and
    activation under each, the neuron id as title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = top_images(neuron, n, root)
    cols = min(GRID_COLUMNS, len(top))
    rows = -(-len(top) // cols)
    # Fixed geometry in inches: each cell is a square image with two caption lines and the activation under it.
    cell_w, img, text_h, pad, head = 1.5, 1.3, 0.5, 0.1, 0.4
    cell_h = img + text_h
    width, height = max(cols * cell_w + pad, 5.0), rows * cell_h + head + pad  # wide enough for the title
    left = (width - cols * cell_w) / 2
    fig = plt.figure(figsize=(width, height))
    fig.text(
        0.5,
        1 - 0.5 * head / height,
        f"{neuron}: top {len(top)} of {len(fixtures.load_probe(root=root))} probe images",
        ha="center",
        va="center",
        fontsize=10,
    )
    for k, item in enumerate(top):
        r, c = divmod(k, cols)
        x = left + c * cell_w + (cell_w - img) / 2
        y_top = height - head - r * cell_h  # top edge of the cell, in inches from the bottom
        ax = fig.add_axes((x / width, (y_top - img) / height, img / width, img / height))
        ax.imshow(np.asarray(fixtures.load_thumbnail(item["row"], root=root)), interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("0.85")
        fig.text(
            (x + img / 2) / width,
            (y_top - img - 0.04) / height,
            f"{_caption(item['caption'])}\nact {item['activation']:.3f}",
            ha="center",
            va="top",
            fontsize=7.5,
            linespacing=1.1,
        )
    return png_bytes(fig)
