"""A second process for a stage, from the standard library: a one-worker ``ProcessPoolExecutor``.

On the 2-core machines glassnet is measured on, a stage is single-threaded Python for most of
its wall time (imports, drawing), so independent work (t-SNE, MLflow calls, figures of finished
results) is submitted to one worker process and collected with ``Future.result()``, which
re-raises the worker's exception with its traceback. The pool executes its tasks in order.

The worker is ``spawn``-ed, never forked from a process whose torch or OpenBLAS threads are
running. Spawning re-imports the parent's ``__main__`` module unless it is a package's
``__main__``: stages therefore run as ``python -m pipeline <stage>`` (see pipeline/__main__.py),
so the worker imports only the modules of the functions it is given.
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _start(modules: Sequence[str], niceness: int) -> None:
    """Worker initializer: lower its priority, import what its tasks will need."""
    # Ctrl-C reaches the whole process group: the stage decides how its work ends and submits
    # that (e.g. marking the MLflow run KILLED), so the worker must live until then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every result has been handed back when the worker exits: skip the interpreter's teardown of
    # torch and MLflow (0.65 s) that the stage's shutdown() would wait for.
    atexit.register(os._exit, 0)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a stage killed outright never shuts its pool down: end with it
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    if niceness and hasattr(os, "nice"):
        os.nice(niceness)
    import_modules(modules)


def import_modules(names: Sequence[str]) -> None:
    """Import ``names``: as a pool task, it readies the worker for the tasks queued after it."""
    for name in names:
        importlib.import_module(name)


def process_pool(warm: Sequence[str] = (), *, niceness: int = 0) -> ProcessPoolExecutor:
    """One spawned worker, started now, that imports ``warm`` while the stage goes on with its own
    work. ``niceness`` > 0 lets the stage's own work come first on a busy machine."""
    pool = ProcessPoolExecutor(
        max_workers=1, mp_context=get_context("spawn"), initializer=_start, initargs=(tuple(warm), niceness)
    )
    pool.submit(os.getpid)  # the worker process starts at the first submit
    return pool


# What each stage's worker imports as it starts, and its niceness. pipeline/__main__ starts the
# stage's worker before it imports the stage module, so the worker's imports run beside the
# stage's own (torch, Lightning: 1-4 s) instead of after them; measured on the default pipeline,
# this kept the cold `dvc repro` where the hand-made helper process had it.
WORKERS: dict[str, tuple[tuple[str, ...], int]] = {
    # train: niced, as at equal priority MLflow's work slowed the fit from 2.5 s to 4.4 s
    "train": (("mlflow",), 10),
    "evaluate": (("pipeline.plots.evaluation",), 0),
    # explain: the surrogate tree is fitted there first (sklearn.tree, ~2 s to import)
    "explain": (("sklearn.tree", "pipeline.plots.attribution", "pipeline.plots.checks"), 0),
    "visualize": (("sklearn.manifold", "sklearn.decomposition", "sklearn.metrics"), 0),
}
_early: dict[str, ProcessPoolExecutor] = {}


def start_early(stage: str) -> None:
    """Start ``stage``'s worker now, for its ``stage_pool`` to take later (no-op without one)."""
    if stage in WORKERS and stage not in _early:
        warm, niceness = WORKERS[stage]
        _early[stage] = process_pool(warm, niceness=niceness)


def stage_pool(stage: str) -> ProcessPoolExecutor:
    """``stage``'s worker: the one ``start_early`` started, else a new one."""
    early = _early.pop(stage, None)
    if early is not None:
        return early
    warm, niceness = WORKERS[stage]
    return process_pool(warm, niceness=niceness)
