"""plots.render_all: figures drawn here, in a pool only, or shared with a pool's worker."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pipeline import plots


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Replaces the drawing of one figure by a 50 ms wait, recording (figure id, thread) in order."""
    calls: list[tuple[str, int]] = []

    def render(figure_id: str, folder: str | Path, dpi: int, *args: Any) -> Path:
        calls.append((figure_id, threading.get_ident()))
        time.sleep(0.05)
        return Path(folder) / f"{figure_id}.png"

    monkeypatch.setattr(plots, "render", render)
    return calls


JOBS = {f"f{i}": (i,) for i in range(8)}


def test_without_a_pool_every_figure_is_drawn_here_in_order(drawn: list[tuple[str, int]]) -> None:
    paths = plots.render_all(JOBS, "out", 100, shared=JOBS)
    assert [p.name for p in paths] == [f"{fid}.png" for fid in JOBS]
    assert [fid for fid, _ in drawn] == list(JOBS)
    assert {thread for _, thread in drawn} == {threading.get_ident()}


def test_shared_figures_are_split_between_the_two_and_each_drawn_once(drawn: list[tuple[str, int]]) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        paths = plots.render_all(JOBS, "out", 100, pool=pool, shared=JOBS)
    assert [p.name for p in paths] == [f"{fid}.png" for fid in JOBS]
    assert sorted(fid for fid, _ in drawn) == sorted(JOBS)
    here = [fid for fid, thread in drawn if thread == threading.get_ident()]
    there = [fid for fid, thread in drawn if thread != threading.get_ident()]
    assert here and there  # both drew: 8 x 50 ms with two drawing
    # This process from the first, the worker from the last: they met in the middle.
    assert here == list(JOBS)[: len(here)]
    assert there == list(reversed(JOBS))[: len(there)]


def test_the_worker_takes_shared_figures_only_once_its_own_work_is_done(drawn: list[tuple[str, int]]) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        own = pool.submit(time.sleep, 0.12)  # e.g. the t-SNE: the worker is busy until then
        after: Future[None] = Future()
        own.add_done_callback(lambda _: after.set_result(None))
        plots.render_all(JOBS, "out", 100, pool=pool, shared=JOBS, after=after)
    there = [fid for fid, thread in drawn if thread != threading.get_ident()]
    # Free after 0.12 s of the 0.4 s this process alone would take: it drew the last few, not all.
    assert 0 < len(there) < 4
    assert there == list(reversed(JOBS))[: len(there)]


def test_a_worker_still_busy_at_the_end_draws_none(drawn: list[tuple[str, int]]) -> None:
    after: Future[None] = Future()  # its own work outlasts this process's figures
    with ThreadPoolExecutor(max_workers=1) as pool:
        plots.render_all(JOBS, "out", 100, pool=pool, shared=JOBS, after=after)
        after.set_result(None)  # nothing is left to take: no figure is drawn twice
    assert [fid for fid, _ in drawn] == list(JOBS)
    assert {thread for _, thread in drawn} == {threading.get_ident()}


def test_elsewhere_figures_are_drawn_in_the_pool_only(drawn: list[tuple[str, int]]) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        paths = plots.render_all(JOBS, "out", 100, pool=pool, elsewhere=("f1", "f5"))
    assert [p.name for p in paths] == [f"{fid}.png" for fid in JOBS]
    there = {fid for fid, thread in drawn if thread != threading.get_ident()}
    assert there == {"f1", "f5"}
