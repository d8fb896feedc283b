"""A second process for a stage's independent work, so both cores work.

On the 2-core machines this project is measured on, a stage is single-threaded Python for most
of its wall time (imports, figure drawing), leaving the other core idle. A stage hands a helper
the work that does not depend on what it computes next (t-SNE projections, figures of finished
results) and collects the results when it needs them.

The helper is a fresh ``spawn``-ed process (never a fork of one that has started torch's or
OpenBLAS's threads), started when the ``Helper`` is made, so its imports overlap the stage's.
Python re-imports the stage's ``__main__`` module in it, so a stage module that starts a helper
keeps its own top-level imports light (torch is imported inside the functions that use it).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from types import TracebackType
from typing import Any, Generic, TypeVar

from pipeline.errors import GlassnetError

T = TypeVar("T")
_STOP = b"stop"  # never a pickle: every pickle starts with the PROTO opcode (0x80)


class HelperError(GlassnetError):
    """The helper process failed or stopped."""


def _serve(conn: Connection, warm: tuple[str, ...]) -> None:
    # The stage decides how a Ctrl-C or SIGTERM ends (it stops this process); if the stage dies
    # without a word, its end of the pipe closes and this loop ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name in warm:
        importlib.import_module(name)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            break
        if data == _STOP:
            break
        fn, args, kwargs = ForkingPickler.loads(data)
        try:
            reply: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 -- sent back and raised in the stage
            reply = (False, (err, traceback.format_exc()))
        try:
            conn.send(reply)
        except Exception:  # noqa: BLE001 -- the result or error would not pickle
            conn.send((False, (None, traceback.format_exc())))
    conn.close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every result is sent; skip the interpreter's teardown of sklearn and matplotlib (~0.4 s
    # the stage would wait for).
    os._exit(0)


class Pending(Generic[T]):
    """The result of a submitted call, in submission order."""

    def __init__(self, helper: Helper, index: int) -> None:
        self._helper, self._index = helper, index

    def result(self) -> T:
        value: T = self._helper._result(self._index)
        return value


class Helper:
    """One helper process running submitted calls in order; a context manager that waits for it.

    ``warm`` names modules the helper imports as it starts (while the stage does its own start).
    Calls and their arguments travel by pickle: module-level functions, arrays, plain data.
    An exception in a call is raised by ``Pending.result``.
    """

    def __init__(self, warm: tuple[str, ...] = ()) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, warm), daemon=True)
        # Its imports run beside the stage's: profiled (PYTHONPROFILEIMPORTTIME), they would
        # interleave with the stage's own lines in one stream (benchmarks.startup reads it).
        profiling = os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
        try:
            self._process.start()
        finally:
            if profiling is not None:
                os.environ["PYTHONPROFILEIMPORTTIME"] = profiling
        child.close()
        self._sent = 0
        self._results: dict[int, tuple[bool, Any]] = {}
        # Sending blocks once the pipe's buffer (64 KB) is full, until the helper reads, and it
        # reads only after its own imports: a thread sends, so the stage goes on meanwhile.
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._send_error: BaseException | None = None
        self._sender = threading.Thread(target=self._send_all, name="helper-send", daemon=True)
        self._sender.start()

    def _send_all(self) -> None:
        while True:
            job = self._outbox.get()
            try:
                self._conn.send_bytes(job if job is not None else _STOP)
            except Exception as err:  # noqa: BLE001 -- raised by the next result()
                self._send_error = err
                return
            if job is None:
                return

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Pending[T]:
        if self._send_error is not None:
            raise HelperError(self._gone()) from self._send_error
        # Pickled here, so an argument that cannot travel fails now, in the stage, naming itself.
        self._outbox.put(bytes(ForkingPickler.dumps((fn, args, kwargs))))
        self._sent += 1
        return Pending(self, self._sent - 1)

    def _result(self, index: int) -> Any:
        while index not in self._results:
            try:
                # Wait in slices: a job the thread failed to send will never be answered.
                while not self._conn.poll(0.2):
                    if self._send_error is not None or not self._process.is_alive():
                        raise HelperError(self._gone()) from self._send_error
                self._results[len(self._results)] = self._conn.recv()
            except (EOFError, OSError) as err:
                raise HelperError(self._gone()) from (self._send_error or err)
        ok, value = self._results[index]
        if ok:
            return value
        error, text = value
        if isinstance(error, Exception):
            raise error from HelperError(f"in the helper process:\n{text}")
        raise HelperError(f"A call in the helper process failed:\n{text}")

    def _gone(self) -> str:
        self._process.join(timeout=5)  # it closed the pipe: its exit code follows shortly
        if self._send_error is not None:
            return f"Could not send a job to the helper process: {self._send_error}"
        return f"The helper process stopped (exit code {self._process.exitcode}); its error is above."

    def __enter__(self) -> Helper:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self._outbox.put(None)
            self._sender.join(timeout=60)
            self._process.join(timeout=60)
        if self._process.is_alive():  # an error here, or a helper that does not stop
            self._process.kill()  # it ignores SIGTERM (see _serve); nothing it does is needed now
            self._process.join()
        self._conn.close()
