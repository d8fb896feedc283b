"""Figures: one function per figure, data in, ``Figure`` out. Callers save and close them."""

from __future__ import annotations

import io as _io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

from collections.abc import Callable, Mapping  # noqa: E402
from typing import Any  # noqa: E402

from matplotlib.figure import Figure  # noqa: E402

from pipeline import io  # noqa: E402


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any
) -> tuple[Figure, Any]:
    """``plt.subplots`` without pyplot: importing pyplot cost a stage 0.35 s, and a Figure made
    directly is not held in pyplot's registry, so it is freed like any object once unused."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_png(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG atomically; the caller still owns (and closes) the figure."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    io.write_bytes(path, buffer.getvalue())
    return Path(path)


def render(plot: Callable[..., Figure], path: str | Path, dpi: int, *args: Any, **kwargs: Any) -> Path:
    """Draw ``plot(*args, **kwargs)`` and save it to ``path``: one figure, start to end, in one
    call that a helper process can run (pipeline.helper)."""
    return save_png(plot(*args, **kwargs), path, dpi)


def render_rest(
    recipes: Mapping[str, tuple[Callable[..., Figure], tuple[Any, ...]]],
    pending: Mapping[str, Any],
    folder: Path,
    dpi: int,
) -> list[Path]:
    """Render here each recipe (name -> (plot, args)) not already handed to a helper process
    (``pending``: name -> its ``Pending``), collect the helper's, and return every figure's path in
    the recipes' order."""
    done = {
        name: render(plot, folder / f"{name}.png", dpi, *args)
        for name, (plot, args) in recipes.items()
        if name not in pending
    }
    done.update({name: future.result() for name, future in pending.items()})
    return [done[name] for name in recipes]
