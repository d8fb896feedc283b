"""Every bad input gets a clear message, a non-zero exit and leaves nothing half-written.

One row per case. Each row runs a stage as a user would (``python -m
pipeline <stage> <overrides>`` in a fresh folder holding that row's files) and
checks that:

- the exit code is non-zero;
- the output names the key, file or column and says what is wrong;
- no Python traceback is shown (unless ``HYDRA_FULL_ERROR=1``: one row proves it then appears);
- the folder holds exactly the same files, byte for byte, as before the run: the
  failed stage's older outputs (put there first) are neither replaced nor joined
  by new or temporary files.

All rows run once, in parallel subprocesses, in a module fixture; each row is then
its own test. Data rows run the prepare stage (no Lightning import, about 2 s);
rows for later stages start from a copy of the session's small trained run.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.data.idx import IMAGES_MAGIC, MNIST_FILES
from tests.conftest import FAST, ROOT, isolated_overrides
from tests.data.test_datasets import split_table, table, write_mnist, write_sorted_mnist

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Files the MLflow store owns; they are not any stage's output.
NOT_OUTPUTS = ("mlflow.db", "mlruns")
# Sentinel "older outputs" of each stage, relative to the row's folder (conf/config.yaml paths).
OLD_OUTPUTS = {
    "prepare": ["artifacts/prepare/data/X_train.npy", "artifacts/prepare/summary.json"],
    "train": [
        "artifacts/train/model.pt",
        "artifacts/train/run.json",
        "artifacts/metrics/train.json",
        "artifacts/plots/history.csv",
    ],
    "evaluate": ["artifacts/evaluate/evaluation.json", "artifacts/metrics/evaluate.json"],
    "explain": ["artifacts/explain/shap.npz", "artifacts/metrics/explain.json"],
    "report": ["reports/index.html"],
    "publish": ["artifacts/published.json"],
}


# ------------------------------------------------------------------------------- row helpers


def csv_file(frame: pd.DataFrame | None = None, name: str = "data.csv") -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (table() if frame is None else frame).to_csv(folder / name, index=False)

    return setup


def raw_file(content: bytes, name: str = "data.csv") -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(content) and None


def directory(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).mkdir(parents=True)


def unreadable(name: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        table().to_csv(folder / name, index=False)
        (folder / name).chmod(0)

    return setup


def mnist(change: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        write_mnist(folder / "mnist", 60, 20, gz=False)
        if change is not None:
            change(folder / "mnist")

    return setup


def truncate(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes((d / name).read_bytes()[:-500]) and None


def bad_magic(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(b"\x00\x00\x08\x04" + (d / name).read_bytes()[4:]) and None


def cut_gzip(name: str) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        (d / f"{name}.gz").write_bytes(gzip.compress((d / name).read_bytes())[:40])
        (d / name).unlink()

    return change


def forget_run(folder: Path) -> None:
    """run.json names an MLflow run the store does not have (e.g. the store was deleted)."""
    run = folder / "artifacts/train/run.json"
    run.write_text(run.read_text().replace(json.loads(run.read_text())["run_id"], "0" * 32))


def replace_by_directory(name: str) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        (d / name).unlink()
        (d / name).mkdir()

    return change


def with_nan(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[[3, 9], "width"] = np.nan
    return frame


CSV = ["data=csv", "data.loader.path=data.csv", "data.loader.target=species"]
MNIST = ["data=mnist", "data.loader.folder=mnist"]


@dataclass(frozen=True)
class Case:
    id: str
    stage: str
    args: list[str]
    # Regexes that must all appear in the output (searched case-sensitively, across lines).
    expect: list[str]
    setup: Callable[[Path], None] | None = None
    # Start from a copy of these stages' outputs of the shared trained run.
    copy: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    traceback: bool = False
    skip: str | None = None


CASES = [
    # --- config: unknown keys, wrong types, out-of-range values, unknown group options
    Case("unknown-key", "prepare", ["+data.colour=red"], [r"data\.colour"]),
    Case("unknown-key-no-plus", "prepare", ["optim.betas=1"], [r"optim\.betas", "not in struct"]),
    Case("unknown-top-level-key", "prepare", ["+epochs=3"], [r"\bepochs\b"]),
    Case("wrong-type-int", "prepare", ["trainer.max_epochs=many"], [r"trainer\.max_epochs", "many"]),
    Case("wrong-type-float", "prepare", ["optim.lr=fast"], [r"optim\.lr", "fast"]),
    Case("wrong-type-list", "prepare", ["model.hidden_sizes=[a,b]"], [r"model\.hidden_sizes"]),
    Case("lr-zero", "train", ["optim.lr=0"], [r"optim\.lr", "positive learning rate"]),
    Case("lr-negative", "prepare", ["optim.lr=-0.01"], [r"optim\.lr", "positive"]),
    Case("dropout-one", "prepare", ["model.dropout=1.0"], [r"model\.dropout", r"\[0, 1\)"]),
    Case("empty-hidden", "prepare", ["model.hidden_sizes=[]"], [r"model\.hidden_sizes", "non-empty"]),
    Case("zero-width-layer", "prepare", ["model.hidden_sizes=[64,0]"], [r"model\.hidden_sizes", "positive"]),
    Case("test-fraction-one", "prepare", ["data.test_size=1.0"], [r"data\.test_size", r"\(0, 1\)"]),
    Case(
        "splits-leave-no-train",
        "prepare",
        ["data.test_size=0.5", "data.val_size=0.5"],
        [r"data\.test_size", r"data\.val_size"],
    ),
    Case("zero-epochs", "prepare", ["trainer.max_epochs=0"], [r"trainer\.max_epochs", "at least 1"]),
    Case("zero-batch", "prepare", ["train.batch_size=0"], [r"train\.batch_size", "at least 1"]),
    Case("unknown-enum", "prepare", ["model.activation=swish"], [r"model\.activation", "swish"]),
    Case("unknown-group-option", "prepare", ["model=nope"], ["model/nope", "Available options", "mlp"]),
    Case("unknown-data-option", "prepare", ["data=imagenet"], ["data/imagenet", "csv", "mnist"]),
    Case(
        "unknown-loader-option",
        "prepare",
        ["+data.loader.xyz=1"],
        [
            r"data\.loader\.xyz",
            r"not an argument of pipeline\.data\.bundled\.load_digits",
            "takes no options",
        ],
    ),
    Case("csv-path-not-set", "prepare", ["data=csv"], [r"data\.loader\.path", "has no value"]),
    Case(
        "bad-missing-policy",
        "prepare",
        [*CSV, "data.loader.missing=zero"],
        [r"data\.loader\.missing='zero'", "error, drop, mean"],
        setup=csv_file(),
    ),
    Case(
        "full-error-shows-traceback",
        "prepare",
        ["optim.lr=0"],
        ["Traceback", r"optim\.lr"],
        env={"HYDRA_FULL_ERROR": "1"},
        traceback=True,
    ),
    # --- data files
    Case("csv-missing-file", "prepare", CSV, ["data.csv' does not exist", r"data\.loader\.path"]),
    Case("csv-empty-file", "prepare", CSV, ["data.csv' is empty"], setup=raw_file(b"")),
    Case(
        "csv-test-class-never-in-training",
        "prepare",
        [*CSV, "data.loader.split=part"],
        [r"Class 'virginica' occurs in the test split \(40 rows\) but never in the train", "data.csv"],
        setup=csv_file(split_table(test_only="virginica")),
    ),
    Case(
        "mnist-scaler-max-value-zero",
        "prepare",
        [*MNIST, "data.scaler.max_value=0"],
        [r"Config key 'data\.scaler' cannot be built", r"'data\.scaler\.max_value' = 0 must be positive"],
    ),
    Case(
        "csv-split-column-bad-value",
        "prepare",
        [*CSV, "data.loader.split=part"],
        [r"Split column 'part' in 'data.csv' must say train or test", "'holdout'"],
        setup=csv_file(split_table().assign(part=lambda f: f["part"].where(f.index % 7 > 0, "holdout"))),
    ),
    Case(
        "csv-header-only",
        "prepare",
        CSV,
        ["data.csv' has a header but no data rows"],
        setup=raw_file(b"a,species\n"),
    ),
    Case("csv-is-a-directory", "prepare", CSV, ["data.csv' is a directory"], setup=directory("data.csv")),
    Case(
        "csv-unreadable",
        "prepare",
        CSV,
        ["data.csv' cannot be read: permission denied"],
        setup=unreadable("data.csv"),
        skip="runs as root, where chmod 000 does not block reading (csv-is-a-directory covers it)"
        if IS_ROOT
        else None,
    ),
    Case(
        "csv-malformed",
        "prepare",
        CSV,
        ["data.csv' is not a readable CSV file", "Expected 2 fields"],
        setup=raw_file(b"a,species\n1,x\n2,y,3,4\n"),
    ),
    Case(
        "csv-binary",
        "prepare",
        CSV,
        ["data.csv' is a binary file", "not CSV text"],
        setup=raw_file(bytes(range(256)) * 4),
    ),
    Case(
        "parquet-malformed",
        "prepare",
        ["data=csv", "data.loader.path=data.parquet", "data.loader.target=species"],
        ["data.parquet' is not a readable Parquet file"],
        setup=raw_file(b"PAR1 but not really", "data.parquet"),
    ),
    Case(
        "csv-target-missing",
        "prepare",
        [*CSV[:2], "data.loader.target=kind"],
        [r"data\.loader\.target='kind' is not in", "its columns are: length, width, colour, flag, species"],
        setup=csv_file(),
    ),
    Case(
        "csv-target-constant",
        "prepare",
        CSV,
        ["'species'", r"single value \('setosa'\)", "at least two classes"],
        setup=csv_file(table().assign(species="setosa")),
    ),
    Case(
        "csv-classification-on-thousands-of-reals",
        "prepare",
        [*CSV, "task=classification"],
        [
            "'species'",
            "real numbers",
            "2000 distinct values",
            "task=classification needs",
            "use task=regression",
        ],
        setup=csv_file(table(2000).assign(species=np.linspace(0.5, 9.5, 2000))),
    ),
    Case(
        "csv-regression-single-value",
        "prepare",
        [*CSV, "task=regression"],
        ["'species'", r"single value \(3\.5\) in all 120 rows", "nothing to predict"],
        setup=csv_file(table().assign(species=3.5)),
    ),
    Case(
        "csv-regression-non-finite",
        "prepare",
        CSV,
        ["'species'", r"2 non-finite value\(s\)", "data row 5", "finite number in every row"],
        setup=csv_file(
            table().assign(species=np.r_[np.linspace(0.5, 9.5, 4), np.inf, np.linspace(1, 2, 114), -np.inf])
        ),
    ),
    Case(
        "csv-regression-on-text",
        "prepare",
        [*CSV, "task=regression"],
        ["'species'", "holds text", "task=regression needs numbers", "task=classification"],
        setup=csv_file(),
    ),
    Case(
        "regression-on-a-classification-dataset",
        "prepare",
        ["task=regression"],
        [r"'task' = 'regression'", "dataset 'digits'", "classification dataset", "data=diabetes"],
    ),
    Case(
        "unknown-task",
        "prepare",
        ["task=ranking"],
        [r"\btask\b", "ranking", "classification"],
    ),
    Case(
        "loss-not-for-the-task",
        "train",
        ["loss=mse"],
        [r"'loss\._target_' = 'torch\.nn\.MSELoss' is not a classification loss", "loss=cross_entropy"],
        copy=("prepare",),
    ),
    Case(
        "loss-key-unknown",
        "train",
        ["loss=huber", "+loss.delt=0.5"],
        [r"loss\.delt", "delta"],
        copy=("prepare",),
    ),
    Case(
        "csv-feature-unknown",
        "prepare",
        [*CSV, "data.loader.features=[length,height]"],
        ["'height'", r"data\.loader\.features", "not in"],
        setup=csv_file(),
    ),
    Case(
        "csv-text-column-unusable",
        "prepare",
        CSV,
        ["'colour'", "not numeric", "120 distinct values", r"data\.loader\.max_categories=20"],
        setup=csv_file(table().assign(colour=[f"#{i:06x}" for i in range(120)])),
    ),
    Case(
        "csv-nan-feature",
        "prepare",
        CSV,
        ["empty cells", r"'width' \(2 rows\)", r"data\.loader\.missing=drop"],
        setup=csv_file(with_nan(table())),
    ),
    Case(
        "csv-infinite-feature",
        "prepare",
        CSV,
        ["'width'", "1 infinite value", "data row 8"],
        setup=csv_file(table().assign(width=[np.inf if i == 7 else 1.0 for i in range(120)])),
    ),
    Case(
        "smaller-than-batch",
        "prepare",
        [*CSV, "train.batch_size=128"],
        ["train split has 84 rows", r"train\.batch_size=128"],
        setup=csv_file(),
    ),
    Case(
        "too-small-to-split",
        "prepare",
        CSV,
        [r"test split would get 1 rows for 3 classes", r"data\.test_size"],
        setup=csv_file(table(6)),
    ),
    Case(
        "mnist-files-missing",
        "prepare",
        MNIST,
        [
            "train-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            "does not download",
            r"data\.loader\.folder='mnist'",
        ],
    ),
    Case(
        "mnist-test-class-never-in-training",
        "prepare",
        MNIST,
        [r"Class '5', '6', '7', '8', '9' occurs in the test split", "train-labels-idx1-ubyte", "t10k-labels"],
        setup=lambda folder: write_sorted_mnist(folder / "mnist", train_classes=5, test_classes=10) and None,
    ),
    Case(
        "mnist-truncated",
        "prepare",
        MNIST,
        ["train-images-idx3-ubyte' is truncated"],
        setup=mnist(truncate(MNIST_FILES["train_images"])),
    ),
    Case(
        "mnist-bad-magic",
        "prepare",
        MNIST,
        ["t10k-images-idx3-ubyte' has magic number 2052", f"expected {IMAGES_MAGIC}"],
        setup=mnist(bad_magic(MNIST_FILES["test_images"])),
    ),
    Case(
        "mnist-corrupt-gzip",
        "prepare",
        MNIST,
        ["train-labels-idx1-ubyte.gz' is not a readable gzip file", "truncated or corrupt"],
        setup=mnist(cut_gzip(MNIST_FILES["train_labels"])),
    ),
    Case(
        "mnist-file-is-a-directory",
        "prepare",
        MNIST,
        ["t10k-labels-idx1-ubyte' is a directory"],
        setup=mnist(replace_by_directory(MNIST_FILES["test_labels"])),
    ),
    # --- later stages: inputs missing, values that only the data can rule out
    Case(
        "train-before-prepare",
        "train",
        [],
        [r"artifacts/prepare/\S+' does not exist", "run the 'prepare' stage first"],
    ),
    Case(
        "progress-variable-unknown",
        "explain",
        [],
        [r"Environment variable GLASSNET_PROGRESS='loud' is not one of auto, always \(1\), never \(0\)"],
        copy=("prepare", "train"),
        env={"GLASSNET_PROGRESS": "loud"},
    ),
    Case(
        "explain-before-train",
        "explain",
        [],
        ["model.pt' does not exist", "run the 'train' stage first"],
        copy=("prepare",),
    ),
    Case(
        "report-before-evaluate",
        "report",
        [],
        ["does not exist", "run the 'evaluate' stage first"],
        copy=("prepare", "train"),
    ),
    Case(
        "publish-before-train",
        "publish",
        [],
        ["run.json' does not exist", "run the 'train' stage first"],
    ),
    Case(
        "publish-run-missing-from-the-store",
        "publish",
        [],
        [r"MLflow run 0{32}", "is not in the store", r"dvc repro --force train"],
        copy=("train",),
        setup=forget_run,
    ),
    Case(
        "train-batch-above-train-split",
        "train",
        ["train.batch_size=5000"],
        [r"train split has \d+ rows, fewer than one batch \(train\.batch_size=5000\)"],
        copy=("prepare", "train"),
    ),
]


# ------------------------------------------------------------------------------------ running


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, except the MLflow store."""
    found: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel.split("/")[0] in NOT_OUTPUTS:
            continue
        readable = path.is_file() and os.access(path, os.R_OK) and path.stat().st_mode & 0o444
        found[rel] = path.read_bytes() if readable else None
    return found


def stage_paths(stage: str, run: Path) -> list[Path]:
    """The shared run's outputs of ``stage`` (files and folders), relative to its folder."""
    outputs = {
        "prepare": ["artifacts/prepare"],
        "train": ["artifacts/train", "artifacts/metrics/train.json", "artifacts/plots/history.csv"],
        "explain": ["artifacts/explain", "artifacts/metrics/explain.json"],
    }[stage]
    return [run / p for p in outputs]


def arrange(case: Case, folder: Path, run: Path) -> None:
    folder.mkdir()
    for stage in case.copy:
        for src in stage_paths(stage, run):
            dst = folder / src.relative_to(run)
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    # The failed stage's "older outputs": sentinels where the real run left none.
    for rel in OLD_OUTPUTS[case.stage]:
        target = folder / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f"older output of {case.stage}: must survive\n".encode())
    if case.setup is not None:
        case.setup(folder)


def execute(case: Case, folder: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **case.env}
    if "HYDRA_FULL_ERROR" not in case.env:
        env.pop("HYDRA_FULL_ERROR", None)
    before = snapshot(folder)
    # Paths (and the MLflow store) inside the row's folder; the row's own overrides last.
    argv = [*isolated_overrides(folder), *FAST, *case.args]
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", case.stage, *argv],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {
        "rc": proc.returncode,
        "out": proc.stdout + proc.stderr,
        "before": before,
        "after": snapshot(folder),
    }


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory, small_run: tuple[Any, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    cfg, _ = small_run
    run = Path(cfg.paths.prepare).resolve().parents[1]
    base = tmp_path_factory.mktemp("bad_input")
    todo = [case for case in CASES if case.skip is None]
    for case in todo:
        arrange(case, base / case.id, run)
    # Each subprocess is mostly import time and one core's work: overlap a few.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda case: execute(case, base / case.id), todo)
        return {case.id: result for case, result in zip(todo, results, strict=True)}


def test_the_table_is_large_and_ids_unique() -> None:
    assert len(CASES) >= 25
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, outcomes: dict[str, dict[str, Any]]) -> None:
    if case.skip:
        pytest.skip(case.skip)
    result = outcomes[case.id]
    out = result["out"]
    assert result["rc"] != 0, out
    for pattern in case.expect:
        assert re.search(pattern, out, re.S), f"{pattern!r} not in output:\n{out}"
    assert ("Traceback" in out) == case.traceback, out
    # Nothing new, nothing replaced, no temporary file left behind.
    assert result["after"].keys() == result["before"].keys()
    changed = [name for name, data in result["after"].items() if data != result["before"][name]]
    assert not changed, changed
