"""Figures: one function per figure, data in, ``Figure`` out. Callers save and close them."""

from __future__ import annotations

import inspect
import io as _io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import io

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any
) -> tuple[Figure, Any]:
    """``plt.subplots`` without pyplot: a Figure made directly is not held in pyplot's registry,
    so it is freed like any object once unused, and no window backend is ever chosen."""
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


@dataclass(frozen=True)
class Job:
    """One figure to draw: its id in the registry (pipeline.plots.figures) and the keyword arguments of
    its drawing function. Made with ``job``, which checks them against that function."""

    figure_id: str
    kwargs: Mapping[str, Any]


def job(figure_id: str, /, **kwargs: Any) -> Job:
    """The job of drawing ``figure_id`` with ``kwargs``, checked now against the drawing function's
    signature: a missing or unknown argument fails here, naming the figure, not when drawn."""
    from pipeline.plots import figures

    draw = figures.draw_function(figure_id)
    try:
        inspect.signature(draw).bind(**kwargs)
    except TypeError as err:
        raise TypeError(f"figure {figure_id!r} ({draw.__module__}.{draw.__name__}): {err}") from None
    return Job(figure_id, kwargs)


def render(item: Job, folder: str | Path, dpi: int) -> Path:
    """Draw ``item`` with its registered function and save it as ``<folder>/<figure_id>.png``."""
    from pipeline.plots import figures

    fig = figures.draw_function(item.figure_id)(**item.kwargs)
    return save_png(fig, Path(folder) / f"{item.figure_id}.png", dpi)


def render_all(jobs: Iterable[Job], folder: str | Path, dpi: int) -> list[Path]:
    """Draw every job into ``folder``, in order; the paths in the same order."""
    return [render(item, folder, dpi) for item in jobs]


def clear(folder: str | Path) -> None:
    """Remove the PNGs of an earlier run: which figures exist depends on the data (images or a
    table, any mistakes), and the report must never show a stale one."""
    for stale in Path(folder).glob("*.png"):
        stale.unlink()
