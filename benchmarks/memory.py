"""Memory: peak RSS of each stage on an MNIST-shaped run (60,000 + 10,000 images of 28 x 28).

    python -m benchmarks.memory             # MNIST-shaped: 70,000 x 784, 3 epochs, 1,000 explained rows
    python -m benchmarks.memory --quick     # smoke test: 2,000 + 500 images, 1 epoch

Synthetic MNIST-shaped IDX files (uint8 images whose class shows as a bright band) are written
into a temporary copy of the project, whose params.yaml then selects `data=mnist` on them, 3
epochs, and the explain stage's issue-sized job (1,000 test rows against 100 background rows).
Each stage runs as `dvc repro` would run it (its `dvc.yaml` command), one at a time; its peak RSS
comes from `os.wait4` on the stage process, i.e. the largest resident set of the stage or of any
helper process it started and waited for (the train stage's MLflow helper, the figure helpers).
Beside it: the stage's wall time, and the dataset's size in memory for scale. (Linux keeps a
process's high-water mark across exec, so the figures are floored at this script's own size when
it starts a stage, ~30 MB: the data are written by a child process.)
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import ROOT, loadavg, log, parser, setup_logging, table
from benchmarks.startup import copy_project, env

STAGES = ("prepare", "train", "evaluate", "explain", "visualize", "report", "publish")
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def idx_bytes(array: Any, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype("uint8", copy=False).tobytes()


def write_mnist_shaped(folder: Path | str, n_train: int, n_test: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for digit in range(10):  # a learnable signal: a bright band at a class-specific row
            row = 2 + digit * 24 // 10
            images[labels == digit, row : row + 2, 4:-4] = 230
        files = (("images-idx3", images, IMAGES_MAGIC), ("labels-idx1", labels, LABELS_MAGIC))
        for kind, array, magic in files:
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array, magic), 1))


def configure(root: Path, data: Path, epochs: int, samples: int) -> None:
    """params.yaml of the copy: data=mnist on ``data``, ``epochs``, ``samples`` explained rows."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    mnist = yaml.safe_load((root / "conf" / "data" / "mnist.yaml").read_text())
    mnist["loader"]["folder"] = str(data)
    params["data"] = mnist
    params["trainer"].update({"max_epochs": epochs, "enable_progress_bar": False})
    params["explain"].update({"n_samples": samples, "n_background": 100})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stage_command(root: Path, stage: str) -> list[str]:
    """The stage's command from dvc.yaml, with its variables filled in."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    command = str(pipeline["stages"][stage]["cmd"])
    variables = {key: value for entry in pipeline.get("vars", []) for key, value in entry.items()}
    for key, value in variables.items():
        command = command.replace(f"${{{key}}}", str(value))
    return command.split()


def run_stage(root: Path, stage: str) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one stage process, as DVC would start it."""
    command = stage_command(root, stage)
    command[0] = sys.executable if command[0] == "python" else command[0]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=root, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{output.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    args = parser(__doc__).parse_args()
    setup_logging()
    n_train, n_test, epochs, samples = (2_000, 500, 1, 100) if args.quick else (60_000, 10_000, 3, 1_000)
    log.info(
        "memory: each stage of an MNIST-shaped run (%d + %d images, %d epochs, %d explained rows), load %s",
        n_train,
        n_test,
        epochs,
        samples,
        loadavg(),
    )
    data_mb = (n_train + n_test) * 784 * 4 / 1e6  # float32, as prepare stores it
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        copy_project(root, quick=False)
        # In a child process: a stage's peak RSS (from wait4) is at least this process's size when
        # it started the stage (Linux keeps the high-water mark across exec), so keep this one small.
        target = str(Path(tmp) / "mnist")
        code = f"from benchmarks.memory import write_mnist_shaped as w; w({target!r}, {n_train}, {n_test})"
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        configure(root, Path(tmp) / "mnist", epochs, samples)
        for stage in STAGES:
            wall, peak = run_stage(root, stage)
            rows.append([stage, f"{wall:.1f}", f"{peak:.0f}", f"{peak / data_mb:.1f}x"])
    log.info("")
    table(["stage", "wall s", "peak RSS MB", "peak / data"], rows)
    log.info("")
    log.info("data in memory (float32 features): %.0f MB; load after: %s", data_mb, loadavg())


if __name__ == "__main__":
    main()
