"""The evaluate stage and what it asks of the task (the scores themselves: tests/test_metrics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import io, layout, task
from tests.conftest import toy_summary

CLASSES = toy_summary(task="classification", class_names=["a", "b", "c"])
TARGET = toy_summary(task="regression", target_name="price", target_mean=2.0)


def test_classification_scores_figures_and_plot_rows() -> None:
    t = task.of(CLASSES)
    y = np.array([0, 0, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2]] * 0.8 + 0.2 / 3
    scores = t.score(y, probs, calibration_bins=10)
    assert scores["metrics"]["accuracy"] == pytest.approx(0.6) and "task" not in scores
    jobs = t.evaluation_jobs(scores, y, probs)
    assert [j.figure_id for j in jobs] == ["confusion_matrix", "per_class", "reliability"]
    assert jobs[1].kwargs["labels"] == ["a", "b", "c"] and jobs[1].kwargs["recall"] == [1 / 3, 1.0, 1.0]
    rows = t.plot_rows(scores, y, probs)
    assert set(rows) == {"predictions", "calibration"}
    assert rows["predictions"][:2] == [("a", "a"), ("a", "b")]
    assert rows["calibration"] == [(pytest.approx(0.8667, abs=1e-4), 0.6, 5)]
    assert t.describe_scores(scores).startswith("Test accuracy 0.6000, macro F1 ")


def test_regression_scores_figures_and_plot_rows() -> None:
    t = task.of(TARGET)
    y, pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 4.5])
    scores = t.score(y, pred, calibration_bins=10)
    assert list(scores) == ["task", "metrics", "largest_errors", "residual_quantiles"]
    assert scores["task"] == "regression" and scores["metrics"]["r2"] == pytest.approx(0.7)
    jobs = t.evaluation_jobs(scores, y, pred)
    assert [j.figure_id for j in jobs] == [
        "predicted_vs_actual",
        "residuals_vs_predicted",
        "residual_distribution",
    ]
    np.testing.assert_array_equal(jobs[2].kwargs["residuals"], [-0.5, 0.0, 1.0, -0.5])
    assert jobs[0].kwargs["target"] == "price"
    assert t.plot_rows(scores, y, pred) == {
        "regression_plot": [(1.0, 1.5), (2.0, 2.0), (3.0, 2.0), (4.0, 4.5)]
    }
    assert t.describe_scores(scores) == (
        "Test RMSE 0.6124, MAE 0.5 price (predicting the train mean: RMSE 1.225), R² 0.7000 on 4 samples"
    )


def test_each_task_predicts_through_the_shared_forward_pass() -> None:
    torch.manual_seed(0)
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    probs = task.of(CLASSES).predict(nn.Linear(4, 3), X)
    assert probs.shape == (5, 3) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    net = nn.Linear(4, 1)
    values = task.of(TARGET).predict(net, X)
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy().reshape(-1)
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_run_outputs(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    metrics = json.loads(Path(cfg.paths.evaluate_metrics).read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "log_loss", "ece"}
    assert 0 < metrics["accuracy"] <= 1
    rows = Path(cfg.paths.predictions).read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + metrics["n_test"]
    evaluation = io.read_json(layout.evaluation_file(cfg), "evaluate")
    assert evaluation == results["evaluate"] and "task" not in evaluation
    calibration = io.read_csv(cfg.paths.calibration, "evaluate")
    assert sum(int(r["count"]) for r in calibration) == metrics["n_test"]
    assert io.read_csv(cfg.paths.regression_plot, "evaluate") == []  # a regression's plot: no rows
    figures = {p.stem for p in layout.figure_dir(cfg.paths.evaluate).glob("*.png")}
    assert figures == {"training_curves", "confusion_matrix", "per_class", "reliability"}
