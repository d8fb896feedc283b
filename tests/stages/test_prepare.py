from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from pipeline import artifacts, task
from pipeline.data import split
from pipeline.data.bundled import load_digits
from pipeline.data.dataset import Dataset
from pipeline.data.summary import Summary
from pipeline.errors import DataError
from pipeline.stages import prepare


def _toy(n: int = 200, classes: int = 4) -> Dataset:
    rng = np.random.default_rng(1)
    y = np.arange(n) % classes
    X = rng.normal(loc=y[:, None] * 3.0, scale=1.0, size=(n, 5)).astype(np.float32) + 10
    return Dataset("toy", X, y, [f"f{i}" for i in range(5)], [str(c) for c in range(classes)])


def test_split_is_stratified_disjoint_and_complete() -> None:
    y = np.repeat(np.arange(4), 50)
    idx = split.indices(y, test_size=0.2, val_size=0.1, seed=3)
    allidx = np.concatenate(list(idx.values()))
    assert sorted(allidx.tolist()) == list(range(200))
    assert len(idx["test"]) == 40 and len(idx["val"]) == 20 and len(idx["train"]) == 140
    for part in idx.values():  # each class keeps its 25% share
        counts = np.bincount(y[part], minlength=4)
        assert counts.max() - counts.min() <= 1


def test_split_is_seeded() -> None:
    y = np.repeat(np.arange(3), 30)
    a, b = split.indices(y, 0.2, 0.1, 7), split.indices(y, 0.2, 0.1, 7)
    c = split.indices(y, 0.2, 0.1, 8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_scaler_is_fitted_on_train_only() -> None:
    arrays, summary = split.prepare(_toy(), StandardScaler(), 0.2, 0.1, seed=0)
    assert np.allclose(arrays["X_train"].mean(axis=0), 0, atol=1e-5)
    assert np.allclose(arrays["X_train"].std(axis=0), 1, atol=1e-3)
    assert not np.allclose(arrays["X_test"].mean(axis=0), 0, atol=1e-3)
    assert arrays["X_test_raw"].min() > 5  # unscaled copy kept for drawing
    assert summary.sizes == {"train": 140, "val": 20, "test": 40}
    assert summary.class_balance["test"] == [10, 10, 10, 10]
    assert summary.feature_names == ["f0", "f1", "f2", "f3", "f4"]


def test_digits_summary() -> None:
    arrays, summary = split.prepare(load_digits(), StandardScaler(), 0.2, 0.1, seed=42)
    assert summary.n_samples == 1797
    assert summary.image_shape == [8, 8]
    assert summary.n_classes == 10 and summary.n_features == 64
    assert sum(summary.sizes.values()) == 1797
    assert arrays["X_train"].dtype == np.float32 and arrays["y_train"].dtype == np.int64


def test_single_class_is_an_error() -> None:
    ds = _toy()
    ds.y = np.zeros_like(ds.y)
    with pytest.raises(DataError, match="single class"):
        split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)


def test_too_few_rows_per_class_is_a_clear_error() -> None:
    ds = _toy(n=8, classes=4)
    with pytest.raises(DataError, match="data.test_size"):
        split.prepare(ds, StandardScaler(), 0.2, 0.1, 0)


def test_run_writes_outputs(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg()
    summary = prepare.run(cfg)
    arrays, loaded = artifacts.load_data(cfg)
    assert loaded == summary
    assert len(arrays["y_test"]) == summary.sizes["test"]


# ------------------------------------------------------------------------------------ Summary


def test_summary_round_trips_and_writes_the_target_keys_for_a_regression_only() -> None:
    _, classes = split.prepare(_toy(), StandardScaler(), 0.2, 0.1, seed=0)
    assert Summary.from_dict(classes.to_dict()) == classes
    assert not {"target_name", "target_mean", "target_std", "target_summary"} & set(classes.to_dict())
    ds = _toy()
    ds.y, ds.task, ds.class_names, ds.target_name = ds.y * 1.5 + 0.25, "regression", [], "dose"
    _, values = split.prepare(ds, StandardScaler(), 0.2, 0.1, seed=0)
    written = values.to_dict()
    assert Summary.from_dict(written) == values
    assert list(written)[4:10] == [
        "n_classes",
        "class_names",
        "target_name",
        "target_mean",
        "target_std",
        "target_summary",
    ]
    assert written["target_name"] == "dose" and written["class_names"] == ["dose"]


def test_a_summary_from_before_regression_loads_with_defaults() -> None:
    old = {
        "dataset": "digits",
        "n_samples": 1797,
        "n_features": 64,
        "n_classes": 10,
        "class_names": [str(d) for d in range(10)],
        "class_balance": {"train": [1] * 10, "val": [1] * 10, "test": [1] * 10},
        "feature_names": [f"f{i}" for i in range(64)],
        "image_shape": [8, 8],
        "sizes": {"train": 1293, "val": 144, "test": 360},
        "scaler": "StandardScaler",
        "seed": 42,
    }
    summary = Summary.from_dict(old)
    assert summary.task == "classification" and summary.target_name is None
    assert summary.warnings == [] and summary.test_split == "stratified" and summary.uri is None
    assert task.of(summary).name == task.of(old).name == "classification"
    with pytest.raises(DataError, match=r"unknown keys \['colour'\].*rerun the 'prepare' stage"):
        Summary.from_dict({**old, "colour": "red"})
    with pytest.raises(DataError, match=r"no n_features"):
        Summary.from_dict({k: v for k, v in old.items() if k != "n_features"})


def test_a_summary_and_a_dict_of_its_keys_make_the_same_task() -> None:
    _, summary = split.prepare(_toy(), StandardScaler(), 0.2, 0.1, seed=0)
    assert task.of(summary).name == task.of(summary.to_dict()).name == "classification"
    assert not task.is_regression(summary) and task.of(summary.to_dict()).summary == summary
