"""Figures: one function per figure, data in, ``Figure`` out. Callers save and close them."""

from __future__ import annotations

import io as _io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

from matplotlib.figure import Figure  # noqa: E402

from pipeline import io  # noqa: E402


def save_png(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG atomically; the caller still owns (and closes) the figure."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    io.write_bytes(path, buffer.getvalue())
    return Path(path)
