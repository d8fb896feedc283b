"""Figures: one function per figure, data in, ``Figure`` out. Callers save and close them."""

from __future__ import annotations

import io as _io
import threading
from collections import deque
from collections.abc import Collection, Mapping
from concurrent.futures import Executor, Future
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
    shared: Collection[str] = (),
    after: Future[Any] | None = None,
) -> list[Path]:
    """Draw every figure of ``jobs`` (figure id -> arguments of its drawing function) into
    ``folder``; the paths in ``jobs``' order.

    ``elsewhere``: ids drawn in ``pool`` only. ``shared``: ids either process may draw, for a
    worker whose own tasks (``after``: the last of them) end before or after this process's
    figures depending on the data and the machine (t-SNE, a tree fit): once ``after`` is done this
    process draws them first to last and the worker last to first, one at a time (the next is
    submitted when its previous one is done, so none waits in the pool's queue where this process
    could not take it back), until the two meet in the middle.
    """
    pending = {
        fid: pool.submit(render, fid, folder, dpi, *jobs[fid]) for fid in elsewhere if pool and fid in jobs
    }
    todo = deque(fid for fid in jobs if fid in shared and fid not in pending)
    lock = threading.Lock()  # the deque's two ends are taken by two threads: here, and the pool's

    def feed(_: object = None) -> None:
        with lock:
            if not todo:
                return
            fid = todo.pop()
            pending[fid] = pool.submit(render, fid, folder, dpi, *jobs[fid])  # type: ignore[union-attr]
        pending[fid].add_done_callback(feed)  # run at once if already done: outside the lock

    if pool is not None:
        if after is None:
            feed()
        else:
            after.add_done_callback(feed)
    done = {}
    for fid, args in jobs.items():
        with lock:
            mine = fid in todo
            if mine:
                todo.remove(fid)
        if fid not in pending or mine:
            done[fid] = render(fid, folder, dpi, *args)
    done.update({fid: future.result() for fid, future in list(pending.items())})
    return [done[fid] for fid in jobs]


def clear(folder: str | Path) -> None:
    """Remove the PNGs of an earlier run: which figures exist depends on the data (images or a
    table, any mistakes), and the report must never show a stale one."""
    for stale in Path(folder).glob("*.png"):
        stale.unlink()
