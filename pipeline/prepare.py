"""Stage 1: load a dataset, split it (stratified, seeded), scale features on train only.

    python -m pipeline.prepare                 # conf/ defaults
    python -m pipeline.prepare data.test_size=0.3

Writes ``<paths.prepare>/data.npz`` (splits) and ``summary.json`` (sizes, class
balance, feature names, image shape).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from hydra.utils import instantiate

from pipeline import io, layout
from pipeline.config import Config
from pipeline.datasets import Dataset
from pipeline.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def split(y: np.ndarray, test_size: float, val_size: float, seed: int) -> dict[str, np.ndarray]:
    """Stratified train/val/test row indices; val_size is a fraction of the whole set."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    try:
        rest, test = train_test_split(index, test_size=test_size, stratify=y, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_size / (1 - test_size), stratify=y[rest], random_state=seed
        )
    except ValueError as err:
        raise DataError(
            f"Cannot split {len(y)} rows with data.test_size={test_size}, data.val_size={val_size} "
            f"so that every class is in every split: {err}"
        ) from err
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def class_balance(y: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(y, minlength=n_classes).tolist()


def prepare(
    ds: Dataset, scaler: Any, test_size: float, val_size: float, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Pure core: dataset in, scaled splits and a summary out. ``scaler`` is fitted on train only."""
    if len(np.unique(ds.y)) < 2:
        raise DataError(f"Dataset '{ds.name}' has a single class; a classifier needs at least two.")
    idx = split(ds.y, test_size, val_size, seed)
    scaler.fit(ds.X[idx["train"]])
    arrays: dict[str, np.ndarray] = {}
    for name in SPLITS:
        arrays[f"X_{name}"] = scaler.transform(ds.X[idx[name]]).astype(np.float32)
        arrays[f"y_{name}"] = ds.y[idx[name]].astype(np.int64)
    # Unscaled test rows, so images can be drawn as the eye sees them.
    arrays["X_test_raw"] = ds.X[idx["test"]].astype(np.float32)
    n_classes = len(ds.class_names)
    summary = {
        "dataset": ds.name,
        "n_samples": int(len(ds.y)),
        "n_features": int(ds.X.shape[1]),
        "n_classes": n_classes,
        "feature_names": list(ds.feature_names),
        "class_names": list(ds.class_names),
        "image_shape": list(ds.image_shape) if ds.image_shape else None,
        "sizes": {name: int(len(idx[name])) for name in SPLITS},
        "class_balance": {name: class_balance(ds.y[idx[name]], n_classes) for name in SPLITS},
        "scaler": type(scaler).__name__,
        "seed": seed,
    }
    return arrays, summary


def run(cfg: Config) -> dict[str, Any]:
    ds: Dataset = instantiate(cfg.data.loader)
    scaler = instantiate(cfg.data.scaler)
    arrays, summary = prepare(ds, scaler, cfg.data.test_size, cfg.data.val_size, cfg.seed)
    io.write_npz(layout.data_file(cfg), **arrays)
    io.write_json(layout.summary_file(cfg), summary)
    log.info(
        "Prepared %s: %d train / %d val / %d test rows, %d features, %d classes -> %s",
        ds.name,
        *summary["sizes"].values(),
        summary["n_features"],
        summary["n_classes"],
        cfg.paths.prepare,
    )
    return summary


def load(cfg: Config) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the prepare stage's outputs (for later stages)."""
    return io.read_npz(layout.data_file(cfg), "prepare"), io.read_json(layout.summary_file(cfg), "prepare")


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
