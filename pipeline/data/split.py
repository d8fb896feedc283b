"""prepare's pure core: a ``Dataset`` in; checked, split (stratified, seeded) and scaled arrays and
their ``Summary`` out. No paths, no config: ``pipeline.stages.prepare`` reads and writes."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.data.summary import Summary
from pipeline.errors import DataError
from pipeline.task import REGRESSION

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


def indices(
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
) -> tuple[dict[str, np.ndarray], Summary]:
    """Dataset in, scaled splits and their summary out. ``scaler`` is fitted on train only;
    None leaves the features as the loader gave them. A regression target stays in its own units
    (its train mean and spread go into the summary: see ``target_scale``)."""
    if scaler is None:
        from sklearn.preprocessing import FunctionTransformer

        scaler = FunctionTransformer()  # the identity
    regression = ds.task == REGRESSION
    check_dataset(ds)
    if ds.test_rows is None and not regression:
        check_splittable(ds.y, ds.class_names, test_size, val_size)
    idx = indices(ds.y, test_size, val_size, seed, ds.test_rows, stratify=not regression)
    sizes = {name: int(len(idx[name])) for name in SPLITS}
    if regression:
        check_regression_splits(ds.y, sizes, test_size, val_size)
    arrays = scaled(ds, idx, scaler)
    described = describe_target(ds, arrays["y_train"]) if regression else describe_classes(ds, idx)
    summary = Summary(
        dataset=ds.name,
        task=ds.task,
        n_samples=int(len(ds.y)),
        n_features=int(ds.X.shape[1]),
        **described,
        feature_names=list(ds.feature_names),
        image_shape=list(ds.image_shape) if ds.image_shape else None,
        sizes=sizes,
        scaler=type(scaler).__name__,
        test_split="official" if ds.test_rows is not None else "random" if regression else "stratified",
        seed=seed,
        uri=ds.uri or None,
    )
    return arrays, summary


def check_dataset(ds: Dataset) -> None:
    """What any loader's dataset must be: X, y and the feature names agree, every value is finite,
    and there is something to learn (two classes, or two distinct target values)."""
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


def scaled(ds: Dataset, idx: dict[str, np.ndarray], scaler: Any) -> dict[str, np.ndarray]:
    """X_<split> (scaled, float32) and y_<split> for each split, the scaler fitted on train only,
    and X_test_raw: the test rows unscaled, so images can be drawn as the eye sees them."""
    scaler.fit(ds.X[idx["train"]])
    label_type = np.float32 if ds.task == REGRESSION else np.int64
    arrays: dict[str, np.ndarray] = {}
    for name in SPLITS:
        arrays[f"X_{name}"] = scaler.transform(ds.X[idx[name]]).astype(np.float32)
        arrays[f"y_{name}"] = ds.y[idx[name]].astype(label_type)
    arrays["X_test_raw"] = ds.X[idx["test"]].astype(np.float32)
    return arrays


def describe_classes(ds: Dataset, idx: dict[str, np.ndarray]) -> dict[str, Any]:
    """A classification's summary fields: its classes, their rows per split, and warnings about
    classes the test split lacks (``check_split_classes``)."""
    n_classes = len(ds.class_names)
    counts = {name: class_balance(ds.y[idx[name]], n_classes) for name in SPLITS}
    source = ds.source or f"dataset '{ds.name}'"
    return {
        "n_classes": n_classes,
        "class_names": list(ds.class_names),
        "class_balance": counts,
        "warnings": check_split_classes(counts, list(ds.class_names), source),
    }


def describe_target(ds: Dataset, y_train: np.ndarray) -> dict[str, Any]:
    """A regression's summary fields: one output named after the target, and the train split's
    target statistics."""
    mean, std = target_scale(y_train)
    train_y = y_train.astype(np.float64)
    name = ds.target_name or "target"
    return {
        "n_classes": 1,
        "class_names": [name],
        "target_name": name,
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
