"""A matplotlib figure as PNG bytes that do not depend on the run: the one way vse writes a plot.

PNG bytes are deterministic for a given matplotlib and Pillow (Agg, fixed dpi, no Software tag naming a
version); both are locked in requirements/*.txt.
"""

from __future__ import annotations

import io


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes, closed; no software/date metadata, so replays give the same bytes."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
