"""File input and output. Every write goes to a temporary file first and is
renamed into place, so a failed or killed stage never leaves a half-written file."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.errors import MissingInputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as err:
        # Name the file the user knows, not the temporary one.
        raise OSError(err.errno, err.strerror, str(target)) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write(path: str | Path, mode: str, write: Callable[[IO[Any]], object]) -> None:
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
        write(fh)


def write_text(path: str | Path, text: str) -> None:
    _write(path, "w", lambda fh: fh.write(text))


def write_bytes(path: str | Path, data: bytes) -> None:
    _write(path, "wb", lambda fh: fh.write(data))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def write(fh: IO[Any]) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

    _write(path, "w", write)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Uncompressed (see write_arrays for what compression cost)."""
    _write(path, "wb", lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def write_arrays(folder: str | Path, **arrays: np.ndarray) -> None:
    """Each array as ``<folder>/<name>.npy``, the folder replaced as a whole or not at all.

    Plain ``.npy`` files: writing costs one ``np.save`` and reading is a memory map
    (``read_arrays``); on MNIST-shaped data (220 MB of float32) ``np.savez_compressed`` had taken
    17 s to write and 2 s to read back in each of the four stages that read it, and an
    uncompressed npz still 3x the plain files (zip CRCs and copies; ``benchmarks/data_io.py``).
    """
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    old = target.with_name(f".{target.name}.old")
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the usual permissions
        for name, value in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as fh:
                np.save(fh, value, allow_pickle=False)
            os.chmod(tmp / f"{name}.npy", 0o666 & ~_UMASK)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except OSError as err:
        # Name the folder the user knows, not the temporary one.
        raise OSError(err.errno, err.strerror, str(target)) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def read_arrays(folder: str | Path, stage: str) -> dict[str, np.ndarray]:
    """The arrays ``write_arrays`` wrote, memory-mapped copy-on-write: pages are read when used,
    and a stage may still modify its arrays (torch.from_numpy wants writable ones) without
    touching the files."""
    found = sorted(require(folder, stage).glob("*.npy"))
    if not found:
        raise MissingInputError(
            f"Input '{folder}' holds no arrays: rerun the '{stage}' stage "
            f"(`dvc repro {stage}` or `python -m pipeline {stage}`)."
        )
    return {path.stem: np.load(path, mmap_mode="c", allow_pickle=False) for path in found}


def require(path: str | Path, stage: str) -> Path:
    """Return ``path`` if it exists, else say which stage produces it."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError(
            f"Input '{p}' does not exist: run the '{stage}' stage first "
            f"(`dvc repro {stage}` or `python -m pipeline {stage}`)."
        )
    return p


def read_json(path: str | Path, stage: str) -> Any:
    with open(require(path, stage), encoding="utf-8") as fh:
        return json.load(fh)


def read_csv(path: str | Path, stage: str) -> list[dict[str, str]]:
    with open(require(path, stage), encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# SIGINT/SIGTERM arriving inside `uninterrupted()` are held until it ends (see pipeline.cli).
_shield = {"depth": 0, "pending": 0}


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Replace a group of output files all together: a stop signal waits until the group is written."""
    _shield["depth"] += 1
    try:
        yield
    finally:
        _shield["depth"] -= 1
    if _shield["depth"] == 0 and _shield["pending"]:
        signum, _shield["pending"] = _shield["pending"], 0
        raise KeyboardInterrupt(f"stopped by signal {signum}")


def on_stop_signal(signum: int, frame: object) -> None:
    """Signal handler: stop now by raising KeyboardInterrupt, or after the current uninterrupted block."""
    if _shield["depth"]:
        _shield["pending"] = signum
        return
    raise KeyboardInterrupt(f"stopped by signal {signum}")
