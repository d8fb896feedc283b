"""A second process for a stage's independent work, so both cores work.

On the 2-core machines this project is measured on, a stage is single-threaded Python for most
of its wall time (imports, figure drawing), leaving the other core idle. A stage hands a helper
the work that does not depend on what it computes next (figures of finished results, t-SNE
projections) and waits for it at the end.

The helper is a fresh ``spawn``-ed process (never a fork of one that has started torch's or
OpenBLAS's threads), started when the ``Helper`` is made, so its imports overlap the stage's.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


def _warm(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name)


def _ready() -> None:
    """A first job: makes the pool start its process now."""


class Helper:
    """One helper process running submitted calls in order; a context manager that waits for them.

    ``warm`` names modules the helper imports as it starts (while the stage does its own start).
    Calls and their arguments travel by pickle: module-level functions, arrays, plain data.
    """

    def __init__(self, warm: tuple[str, ...] = ()) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_warm,
            initargs=(warm,),
        )
        # The process starts with the first job. Its imports run beside the stage's: profiled
        # (PYTHONPROFILEIMPORTTIME), they would interleave with the stage's own lines in one stream.
        profiling = os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
        try:
            self._pool.submit(_ready)
        finally:
            if profiling is not None:
                os.environ["PYTHONPROFILEIMPORTTIME"] = profiling

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def __enter__(self) -> Helper:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        # On an error nothing submitted is needed any more: drop what has not started.
        self._pool.shutdown(wait=True, cancel_futures=kind is not None)
