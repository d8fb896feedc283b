from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.stages import evaluate


def test_confusion_and_per_class_scores() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = evaluate.confusion(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    s = evaluate.per_class(cm)
    assert s["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert s["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert s["f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert s["support"].tolist() == [3, 2, 1]


def test_undefined_precision_is_zero() -> None:
    s = evaluate.per_class(evaluate.confusion(np.array([0, 1]), np.array([0, 0]), 2))
    assert s["precision"].tolist() == [0.5, 0.0] and s["f1"][1] == 0.0


def test_log_loss() -> None:
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert evaluate.log_loss(np.array([0, 1]), probs) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)


def test_ece_by_hand() -> None:
    # Two bins of 2 samples. Bin (0.5, 0.75]: confidences 0.6, 0.7, one right -> |0.5-0.65| = 0.15.
    # Bin (0.75, 1]: confidences 0.9, 0.9, both right -> |1 - 0.9| = 0.1. ECE = 0.5*0.15 + 0.5*0.1.
    probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.1, 0.9]])
    y = np.array([0, 0, 0, 1])
    assert evaluate.expected_calibration_error(y, probs, n_bins=4) == pytest.approx(0.125)
    rows = evaluate.reliability(y, probs, 4)
    assert [r["count"] for r in rows] == [2, 2]


def test_perfectly_calibrated_is_zero() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert evaluate.expected_calibration_error(np.array([0, 1]), probs, 10) == 0.0


def test_evaluate_core_top_confusions() -> None:
    probs = np.eye(3)[[0, 1, 1, 1, 2]]
    out = evaluate.evaluate(np.array([0, 0, 0, 1, 2]), probs, ["a", "b", "c"], 10)
    assert out["metrics"]["accuracy"] == pytest.approx(0.6)
    assert out["top_confusions"] == [{"true": "a", "predicted": "b", "count": 2}]


def test_run_outputs(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    metrics = json.loads(Path(cfg.paths.evaluate_metrics).read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "log_loss", "ece"}
    assert 0 < metrics["accuracy"] <= 1
    rows = Path(cfg.paths.predictions).read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + metrics["n_test"]
