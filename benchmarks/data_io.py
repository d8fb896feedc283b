"""Prepared-data I/O of the MNIST-shaped pipeline: glassnet's data file against plain np.save/np.load.

    python -m benchmarks.data_io --repeats 3   # 70,000 x 784 float32 (MNIST-shaped)
    python -m benchmarks.data_io --quick       # smoke test: 2,000 rows, one repetition

The arrays are those prepare writes for MNIST (train/val/test splits of 70,000 x 784 float32, the
unscaled test images, the labels). Per repetition, in one run and in a fresh temporary folder:

- glassnet: ``pipeline.io.write_arrays`` once (prepare) and ``pipeline.io.read_arrays`` (memory
  maps) once per stage that reads the prepared data (train, evaluate, explain, visualize: 4);
- reference: ``np.save`` of each array once and ``np.load`` of each once per reading stage;
- compressed: ``np.savez_compressed`` once and ``np.load`` of every member per reading stage (the
  format before issue 13).

Every side reads every value it loaded once (a sum), as a stage does, so a memory map is not
credited with reading nothing. Target: glassnet at most 2x the reference.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import Stat, loadavg, log, parser, setup_logging, table, timed
from pipeline import io

READING_STAGES = 4  # train, evaluate, explain, visualize
TARGET = 2.0


def mnist_shaped(n: int, features: int = 784) -> dict[str, np.ndarray]:
    """Arrays as prepare writes them for MNIST: 6/7 train (of which 1/10 validation), 1/7 test."""
    rng = np.random.default_rng(0)
    n_test = n // 7
    n_val = (n - n_test) // 10
    sizes = {"train": n - n_test - n_val, "val": n_val, "test": n_test}
    # Digit-like: mostly zeros (background pixels), as in MNIST.
    out: dict[str, np.ndarray] = {}
    for split, rows in sizes.items():
        pixels = rng.integers(0, 256, (rows, features)).astype(np.float32)
        pixels[rng.random((rows, features)) < 0.8] = 0
        out[f"X_{split}"] = (pixels - 33.3) / 78.6
        out[f"y_{split}"] = rng.integers(0, 10, rows)
        if split == "test":
            out["X_test_raw"] = pixels
    return out


def glassnet(arrays: dict[str, np.ndarray], folder: Path) -> None:
    io.write_arrays(folder / "data", **arrays)
    for _ in range(READING_STAGES):
        # A stage reads every row of its arrays (training, prediction): touch them all.
        for value in io.read_arrays(folder / "data", "prepare").values():
            value.sum()


def reference(arrays: dict[str, np.ndarray], folder: Path) -> None:
    for key, value in arrays.items():
        np.save(folder / f"{key}.npy", value)
    for _ in range(READING_STAGES):
        for key in arrays:
            np.load(folder / f"{key}.npy").sum()


def compressed(arrays: dict[str, np.ndarray], folder: Path) -> None:
    np.savez_compressed(folder / "old.npz", **arrays)  # type: ignore[arg-type]
    for _ in range(READING_STAGES):
        with np.load(folder / "old.npz") as data:
            for key in data.files:
                data[key].sum()


def main() -> None:
    cli = parser(__doc__)
    args = cli.parse_args()
    setup_logging()
    n, repeats = (2_000, 1) if args.quick else (70_000, args.repeats)
    arrays = mnist_shaped(n)
    mb = sum(a.nbytes for a in arrays.values()) / 1e6
    log.info(
        "data_io: %d rows x 784, %.0f MB in %d arrays, %d repetitions, load %s",
        n,
        mb,
        len(arrays),
        repeats,
        loadavg(),
    )
    sides: dict[str, Callable[[dict[str, np.ndarray], Path], None]] = {
        "reference": reference,
        "glassnet": glassnet,
        "compressed": compressed,
    }
    took: dict[str, list[float]] = {name: [] for name in sides}
    for rep in range(repeats):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                took[name].append(timed(lambda: sides[name](arrays, Path(tmp))))  # noqa: B023
    ref = Stat(took["reference"])
    rows = [
        [name, Stat(values).fmt(), f"{Stat(values).median / ref.median:.2f}x"]
        for name, values in took.items()
    ]
    log.info("")
    table(
        [
            f"1 write + {READING_STAGES} reads",
            "seconds",
            f"ratio to np.save/np.load (target <= {TARGET}x for glassnet)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
