from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from pipeline import artifacts
from pipeline.data.datasets import Dataset, load_digits
from pipeline.errors import DataError
from pipeline.stages import prepare


def _toy(n: int = 200, classes: int = 4) -> Dataset:
    rng = np.random.default_rng(1)
    y = np.arange(n) % classes
    X = rng.normal(loc=y[:, None] * 3.0, scale=1.0, size=(n, 5)).astype(np.float32) + 10
    return Dataset("toy", X, y, [f"f{i}" for i in range(5)], [str(c) for c in range(classes)])


def test_split_is_stratified_disjoint_and_complete() -> None:
    y = np.repeat(np.arange(4), 50)
    idx = prepare.split(y, test_size=0.2, val_size=0.1, seed=3)
    allidx = np.concatenate(list(idx.values()))
    assert sorted(allidx.tolist()) == list(range(200))
    assert len(idx["test"]) == 40 and len(idx["val"]) == 20 and len(idx["train"]) == 140
    for part in idx.values():  # each class keeps its 25% share
        counts = np.bincount(y[part], minlength=4)
        assert counts.max() - counts.min() <= 1


def test_split_is_seeded() -> None:
    y = np.repeat(np.arange(3), 30)
    a, b = prepare.split(y, 0.2, 0.1, 7), prepare.split(y, 0.2, 0.1, 7)
    c = prepare.split(y, 0.2, 0.1, 8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_scaler_is_fitted_on_train_only() -> None:
    arrays, summary = prepare.prepare(_toy(), StandardScaler(), 0.2, 0.1, seed=0)
    assert np.allclose(arrays["X_train"].mean(axis=0), 0, atol=1e-5)
    assert np.allclose(arrays["X_train"].std(axis=0), 1, atol=1e-3)
    assert not np.allclose(arrays["X_test"].mean(axis=0), 0, atol=1e-3)
    assert arrays["X_test_raw"].min() > 5  # unscaled copy kept for drawing
    assert summary["sizes"] == {"train": 140, "val": 20, "test": 40}
    assert summary["class_balance"]["test"] == [10, 10, 10, 10]
    assert summary["feature_names"] == ["f0", "f1", "f2", "f3", "f4"]


def test_digits_summary() -> None:
    arrays, summary = prepare.prepare(load_digits(), StandardScaler(), 0.2, 0.1, seed=42)
    assert summary["n_samples"] == 1797
    assert summary["image_shape"] == [8, 8]
    assert summary["n_classes"] == 10 and summary["n_features"] == 64
    assert sum(summary["sizes"].values()) == 1797
    assert arrays["X_train"].dtype == np.float32 and arrays["y_train"].dtype == np.int64


def test_single_class_is_an_error() -> None:
    ds = _toy()
    ds.y = np.zeros_like(ds.y)
    with pytest.raises(DataError, match="single class"):
        prepare.prepare(ds, StandardScaler(), 0.2, 0.1, 0)


def test_too_few_rows_per_class_is_a_clear_error() -> None:
    ds = _toy(n=8, classes=4)
    with pytest.raises(DataError, match="data.test_size"):
        prepare.prepare(ds, StandardScaler(), 0.2, 0.1, 0)


def test_run_writes_outputs(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg()
    summary = prepare.run(cfg)
    arrays, loaded = artifacts.load_data(cfg)
    assert loaded == summary
    assert len(arrays["y_test"]) == summary["sizes"]["test"]
