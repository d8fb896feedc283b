"""Figures: one function per figure, data in, ``Figure`` out. Callers save and close them."""

from __future__ import annotations

import io as _io
from collections.abc import Collection, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import io

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any
) -> tuple[Figure, Any]:
    """``plt.subplots`` without pyplot: importing pyplot cost a stage 0.35 s, and a Figure made
    directly is not held in pyplot's registry, so it is freed like any object once unused."""
    # Imported here, not at the top: a stage whose figures are all drawn in its pool's worker
    # (evaluate) calls render_all without ever loading matplotlib (0.3 s).
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_png(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG atomically; the caller still owns (and closes) the figure."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    io.write_bytes(path, buffer.getvalue())
    return Path(path)


def render(figure_id: str, folder: str | Path, dpi: int, *args: Any) -> Path:
    """Draw figure ``figure_id`` with its registered function (pipeline.figures) and save it as
    ``<folder>/<figure_id>.png``: one figure, start to end, in one call a pool worker can run."""
    from pipeline import figures

    return save_png(figures.draw_function(figure_id)(*args), Path(folder) / f"{figure_id}.png", dpi)


def render_all(
    jobs: Mapping[str, tuple[Any, ...]],
    folder: str | Path,
    dpi: int,
    *,
    pool: Executor | None = None,
    elsewhere: Collection[str] = (),
) -> list[Path]:
    """Draw every figure of ``jobs`` (figure id -> arguments of its drawing function) into
    ``folder``, the ids in ``elsewhere`` in ``pool`` meanwhile; the paths in ``jobs``' order."""
    pending = {
        fid: pool.submit(render, fid, folder, dpi, *jobs[fid]) for fid in elsewhere if pool and fid in jobs
    }
    done = {fid: render(fid, folder, dpi, *args) for fid, args in jobs.items() if fid not in pending}
    done.update({fid: future.result() for fid, future in pending.items()})
    return [done[fid] for fid in jobs]


def clear(folder: str | Path) -> None:
    """Remove the PNGs of an earlier run: which figures exist depends on the data (images or a
    table, any mistakes), and the report must never show a stale one."""
    for stale in Path(folder).glob("*.png"):
        stale.unlink()
