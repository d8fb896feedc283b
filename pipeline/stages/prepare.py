"""Stage 1: load a dataset, split it (stratified, seeded), scale features on train only.

    python -m pipeline prepare                 # conf/ defaults
    python -m pipeline prepare data.test_size=0.3
    python -m pipeline prepare data=mnist data.loader.folder=~/mnist
    python -m pipeline prepare data=csv data.loader.path=my.csv data.loader.target=label

Writes ``<paths.prepare>/data/`` (the splits, one ``.npy`` file per array) and ``summary.json`` (sizes, class
balance, feature names, image shape).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, cast

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from pipeline import io, layout
from pipeline.config import Config
from pipeline.data import datasets
from pipeline.data.datasets import Dataset
from pipeline.errors import ConfigError, DataError
from pipeline.task import REGRESSION

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def check_splittable(y: np.ndarray, class_names: list[str], test_size: float, val_size: float) -> None:
    """Say, naming the keys, when the rows cannot give every class a row in every split."""
    counts = np.bincount(y, minlength=len(class_names))
    n, n_classes = len(y), int((counts > 0).sum())  # classes with no rows need no place in a split
    for split_name, key, fraction in (
        ("test", "data.test_size", test_size),
        ("validation", "data.val_size", val_size),
    ):
        if n * fraction < n_classes:
            raise DataError(
                f"Cannot split {n} rows into train/validation/test with data.test_size={test_size}, "
                f"data.val_size={val_size}: the {split_name} split would get {int(n * fraction)} rows "
                f"for {n_classes} classes, and each class needs a row in every split. "
                f"Use more data or raise {key}."
            )
    rare = [(class_names[k], int(c)) for k, c in enumerate(counts) if 0 < c < len(SPLITS)]
    if rare:
        listed = ", ".join(f"'{name}' ({c} row{'s' * (c > 1)})" for name, c in rare[:5])
        if len(rare) > 5:
            listed += f" and {len(rare) - 5} more of the {n_classes} classes (is the target an identifier?)"
        raise DataError(
            f"Class(es) {listed} have fewer than {len(SPLITS)} rows, so they cannot appear in each of "
            "the train, validation and test splits (data.test_size, data.val_size). "
            "Add rows of those classes or remove them from the data."
        )


def split(
    y: np.ndarray,
    test_size: float,
    val_size: float,
    seed: int,
    test_rows: np.ndarray | None = None,
    *,
    stratify: bool = True,
) -> dict[str, np.ndarray]:
    """Train/val/test row indices, stratified by class unless ``stratify`` is false (a regression
    target has no classes); val_size is a fraction of the whole set.

    With ``test_rows`` (a dataset's official test set) those rows are the test
    split and train/val are drawn from the others.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    try:
        if test_rows is None:
            strata = y if stratify else None
            rest, test = train_test_split(index, test_size=test_size, stratify=strata, random_state=seed)
        else:
            test = np.asarray(test_rows)
            rest = np.setdiff1d(index, test)
        n_val = max(1, round(val_size * len(y)))
        strata = y[rest] if stratify else None
        train, val = train_test_split(rest, test_size=n_val, stratify=strata, random_state=seed)
    except ValueError as err:
        raise DataError(
            f"Cannot split {len(y)} rows with data.test_size={test_size}, data.val_size={val_size} "
            f"so that every class is in every split: {err}"
        ) from err
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def check_finite(ds: Dataset) -> None:
    """Any loader's features must be finite: name the columns that are not."""
    bad = ~np.isfinite(ds.X)
    if bad.any():
        columns = np.flatnonzero(bad.any(axis=0))
        listed = ", ".join(f"'{ds.feature_names[c]}'" for c in columns[:5])
        more = f" and {len(columns) - 5} more" if len(columns) > 5 else ""
        raise DataError(
            f"Dataset '{ds.name}' has {int(bad.sum())} NaN or infinite feature value(s) in column(s) "
            f"{listed}{more} (first in row {int(np.flatnonzero(bad.any(axis=1))[0])}). "
            "Fix the data or choose a missing-value policy (data.loader.missing)."
        )


def class_balance(y: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(y, minlength=n_classes).tolist()


def check_split_classes(counts: dict[str, list[int]], class_names: list[str], source: str) -> list[str]:
    """Classes the splits must share. A class of the validation or test split that never occurs in
    training cannot be learnt, and every metric on it is zero: DataError, naming the classes and
    where the rows came from. A class of training absent from the test split is allowed (the test
    metrics say nothing about it): returned as a warning."""

    def names(indices: list[int]) -> str:
        return ", ".join(f"'{class_names[i]}'" for i in indices)

    train = counts["train"]
    for split in ("val", "test"):
        unseen = [i for i, n in enumerate(counts[split]) if n and not train[i]]
        if unseen:
            raise DataError(
                f"Class {names(unseen)} occurs in the {split} split "
                f"({', '.join(str(counts[split][i]) for i in unseen)} rows) but never in the train split "
                f"(from {source}): the network cannot learn it. Use training data that holds every "
                "class (e.g. files cut from a class-sorted source hold only the first classes)."
            )
    absent = [i for i, n in enumerate(counts["test"]) if train[i] and not n]
    if not absent:
        return []
    return [
        f"Class {names(absent)} of the train split never occurs in the test split (from {source}): "
        "the test metrics say nothing about it."
    ]


def check_regression_splits(y: np.ndarray, sizes: dict[str, int], test_size: float, val_size: float) -> None:
    """Every split of a regression needs rows, and the train split a target that varies."""
    for name, key in (("test", "data.test_size"), ("val", "data.val_size"), ("train", "data.test_size")):
        if sizes[name] < 2:
            raise DataError(
                f"Cannot split {len(y)} rows with data.test_size={test_size}, data.val_size={val_size}: "
                f"the {name} split would get {sizes[name]} row(s), and it needs at least 2. Use more "
                f"data or change {key}."
            )


def target_scale(y_train: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a regression target on the train split: the train stage
    fits the network to (y - mean) / std, so the loss and learning rate work at the scale of 1
    whatever the target's units (a price in dollars, a dose in micrograms)."""
    mean, std = float(np.mean(y_train, dtype=np.float64)), float(np.std(y_train, dtype=np.float64))
    if not std > 0:
        raise DataError(
            f"The regression target is the same value ({mean:g}) in every row of the train split: "
            "there is nothing to learn. Use more data or another target."
        )
    return mean, std


def prepare(
    ds: Dataset, scaler: Any, test_size: float, val_size: float, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Pure core: dataset in, scaled splits and a summary out. ``scaler`` is fitted on train only;
    None leaves the features as the loader gave them. A regression target stays in its own units
    (its train mean and spread go into the summary: see ``target_scale``)."""
    if scaler is None:
        from sklearn.preprocessing import FunctionTransformer

        scaler = FunctionTransformer()  # the identity
    regression = ds.task == REGRESSION
    if not regression and len(np.unique(ds.y)) < 2:
        raise DataError(f"Dataset '{ds.name}' has a single class; a classifier needs at least two.")
    if ds.X.ndim != 2 or len(ds.X) != len(ds.y) or ds.X.shape[1] != len(ds.feature_names):
        raise DataError(
            f"Dataset '{ds.name}': X has shape {ds.X.shape}, y {ds.y.shape} and there are "
            f"{len(ds.feature_names)} feature names; they must agree."
        )
    check_finite(ds)
    if regression and not np.all(np.isfinite(ds.y)):
        raise DataError(
            f"Dataset '{ds.name}' has {int((~np.isfinite(ds.y)).sum())} NaN or infinite target value(s) "
            f"(first in row {int(np.flatnonzero(~np.isfinite(ds.y))[0])}): fix the data."
        )
    if regression and len(np.unique(ds.y)) < 2:
        raise DataError(f"Dataset '{ds.name}' has a single target value; there is nothing to predict.")
    if ds.test_rows is None and not regression:
        check_splittable(ds.y, ds.class_names, test_size, val_size)
    idx = split(ds.y, test_size, val_size, seed, ds.test_rows, stratify=not regression)
    sizes = {name: int(len(idx[name])) for name in SPLITS}
    if regression:
        check_regression_splits(ds.y, sizes, test_size, val_size)
    scaler.fit(ds.X[idx["train"]])
    label_type = np.float32 if regression else np.int64
    arrays: dict[str, np.ndarray] = {}
    for name in SPLITS:
        arrays[f"X_{name}"] = scaler.transform(ds.X[idx[name]]).astype(np.float32)
        arrays[f"y_{name}"] = ds.y[idx[name]].astype(label_type)
    # Unscaled test rows, so images can be drawn as the eye sees them.
    arrays["X_test_raw"] = ds.X[idx["test"]].astype(np.float32)
    summary: dict[str, Any] = {
        "dataset": ds.name,
        "task": ds.task,
        "n_samples": int(len(ds.y)),
        "n_features": int(ds.X.shape[1]),
    }
    if regression:
        mean, std = target_scale(arrays["y_train"])
        train_y = arrays["y_train"].astype(np.float64)
        summary.update(
            {
                "n_classes": 1,  # one output unit: the prediction
                "class_names": [ds.target_name or "target"],
                "target_name": ds.target_name or "target",
                "target_mean": mean,
                "target_std": std,
                "target_summary": {
                    "min": float(train_y.min()),
                    "max": float(train_y.max()),
                    "mean": mean,
                    "std": std,
                },
                "class_balance": None,
                "warnings": [],
            }
        )
    else:
        n_classes = len(ds.class_names)
        counts = {name: class_balance(ds.y[idx[name]], n_classes) for name in SPLITS}
        summary.update(
            {
                "n_classes": n_classes,
                "class_names": list(ds.class_names),
                "class_balance": counts,
                # shown in the report's at-a-glance panel
                "warnings": check_split_classes(
                    counts, list(ds.class_names), ds.source or f"dataset '{ds.name}'"
                ),
            }
        )
    summary.update(
        {
            "feature_names": list(ds.feature_names),
            "image_shape": list(ds.image_shape) if ds.image_shape else None,
            "sizes": sizes,
            "scaler": type(scaler).__name__,
            # "official": the dataset's own test set (MNIST's t10k files); "stratified" a stratified
            # draw; "random" a plain seeded draw (regression: no classes to stratify by).
            "test_split": "official"
            if ds.test_rows is not None
            else "random"
            if regression
            else "stratified",
            "seed": seed,
            # Where the rows were read from (the MLflow run's dataset source); null: see "loader".
            "uri": ds.uri or None,
        }
    )
    return arrays, summary


def load_dataset(loader: Any, task: str | None = None) -> Dataset:
    """Call ``data.loader._target_`` with the other ``data.loader`` keys, each checked first, and
    ``task`` (the config's) when the loader takes one; a loader whose dataset has its own task
    (digits are classes, diabetes a quantity) must agree with a ``task`` that is set.

    The loader is called directly rather than through ``hydra.utils.instantiate``,
    which would wrap a loader's DataError in its own exception and message.
    """
    from hydra.utils import get_method
    from omegaconf import DictConfig, OmegaConf

    kwargs: dict[str, Any] = dict(loader) if not isinstance(loader, DictConfig) else {}
    if isinstance(loader, DictConfig):
        for key in map(str, loader):
            if OmegaConf.is_missing(loader, key):
                raise ConfigError(
                    f"Config key 'data.loader.{key}' has no value and this dataset needs one: "
                    f"set it, e.g. `python -m pipeline prepare data.loader.{key}=...`."
                )
        kwargs = cast(dict[str, Any], OmegaConf.to_container(loader, resolve=True))
    target = kwargs.pop("_target_", None)
    if not target:
        raise ConfigError("Config key 'data.loader._target_' is missing: name the loader function.")
    try:
        fn = get_method(str(target))
    except Exception as err:  # Hydra raises ImportError or ValueError, depending on what failed
        raise ConfigError(
            f"Config key 'data.loader._target_' = {target!r} cannot be imported: {err}"
        ) from err
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = [key for key in kwargs if key not in params]
        if unknown:
            accepted = ", ".join(params) or "no options"
            raise ConfigError(
                f"Config key 'data.loader.{unknown[0]}' is not an option of {target}; it accepts: {accepted}."
            )
    required = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in kwargs
    ]
    if required:
        raise ConfigError(
            f"Config key 'data.loader.{required[0]}' is required by {target}: "
            f"set it, e.g. `python -m pipeline prepare data.loader.{required[0]}=...`."
        )
    takes_task = "task" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "task" in kwargs:
        raise ConfigError(
            "Config key 'data.loader.task' is set by the prepare stage from 'task': set task=... instead."
        )
    if takes_task and task is not None:
        kwargs["task"] = task
    ds = fn(**kwargs)
    if not isinstance(ds, Dataset):
        raise ConfigError(f"data.loader._target_ {target} returned {type(ds).__name__}, not a Dataset.")
    if task is not None and ds.task != task:
        other = (
            "data=diabetes or data=csv"
            if task == REGRESSION
            else "data=digits, data=breast_cancer or data=csv"
        )
        raise ConfigError(
            f"Config key 'task' = {task!r}, but dataset '{ds.name}' ({target}) is a {ds.task} dataset. "
            f"Drop task=... (each dataset knows its own) or use a {task} dataset ({other})."
        )
    return ds


def run(cfg: Config) -> dict[str, Any]:
    try:  # before the data are read: a bad key fails at once
        scaler = instantiate(cfg.data.scaler)
    except InstantiationException as err:
        raise ConfigError(f"Config key 'data.scaler' cannot be built: {err}") from err
    task = cfg.task.value if cfg.task is not None else None
    ds = load_dataset(cfg.data.loader, task)
    if task is None:
        log.info("Task: %s, inferred from the data (%s); set task=... to choose", ds.task, task_reason(ds))
    arrays, summary = prepare(ds, scaler, cfg.data.test_size, cfg.data.val_size, cfg.seed)
    summary["loader"] = str(cfg.data.loader.get("_target_", ""))
    datasets.check_batch_size(summary["sizes"]["train"], cfg.train.batch_size)
    if ds.test_rows is not None:
        log.info("Test split: %s's own test set; data.test_size is not used", ds.name)
    for warning in summary["warnings"]:
        log.warning("%s", warning)
    io.write_arrays(layout.data_file(cfg), **arrays)
    io.write_json(layout.summary_file(cfg), summary)
    if ds.task == REGRESSION:
        target = (
            f"a numeric target '{summary['target_name']}' (train mean {summary['target_mean']:.4g}, "
            f"sd {summary['target_std']:.4g})"
        )
    else:
        target = f"{summary['n_classes']} classes"
    log.info(
        "Prepared %s: %d train / %d val / %d test rows, %d features, %s -> %s",
        ds.name,
        *summary["sizes"].values(),
        summary["n_features"],
        target,
        cfg.paths.prepare,
    )
    return summary


def task_reason(ds: Dataset) -> str:
    """Why the dataset's task is what it is, for the log line that says it was inferred."""
    if ds.task != REGRESSION:
        return f"{len(ds.class_names)} classes"
    distinct = len(np.unique(ds.y))
    return f"target '{ds.target_name}' holds {distinct} distinct numbers"


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
