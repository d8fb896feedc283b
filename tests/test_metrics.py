"""pipeline.metrics: the test-set scores, checked on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import metrics, stats

# ------------------------------------------------------------------------------ classification


def test_confusion_and_per_class_scores() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = metrics.confusion(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    s = metrics.per_class(cm)
    assert s["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert s["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert s["f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert s["support"].tolist() == [3, 2, 1]


def test_undefined_precision_is_zero() -> None:
    s = metrics.per_class(metrics.confusion(np.array([0, 1]), np.array([0, 0]), 2))
    assert s["precision"].tolist() == [0.5, 0.0] and s["f1"][1] == 0.0


def test_log_loss() -> None:
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert metrics.log_loss(np.array([0, 1]), probs) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)


def test_ece_by_hand() -> None:
    # Two bins of 2 samples. Bin (0.5, 0.75]: confidences 0.6, 0.7, one right -> |0.5-0.65| = 0.15.
    # Bin (0.75, 1]: confidences 0.9, 0.9, both right -> |1 - 0.9| = 0.1. ECE = 0.5*0.15 + 0.5*0.1.
    probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.1, 0.9]])
    y = np.array([0, 0, 0, 1])
    assert metrics.expected_calibration_error(y, probs, n_bins=4) == pytest.approx(0.125)
    rows = metrics.reliability(y, probs, 4)
    assert [r["count"] for r in rows] == [2, 2]


def test_perfectly_calibrated_is_zero() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.expected_calibration_error(np.array([0, 1]), probs, 10) == 0.0


def test_classification_top_confusions() -> None:
    probs = np.eye(3)[[0, 1, 1, 1, 2]]
    out = metrics.classification(np.array([0, 0, 0, 1, 2]), probs, ["a", "b", "c"], 10)
    assert out["metrics"]["accuracy"] == pytest.approx(0.6)
    assert out["top_confusions"] == [{"true": "a", "predicted": "b", "count": 2}]
    assert list(out) == ["metrics", "per_class", "confusion", "top_confusions", "reliability"]


# ---------------------------------------------------------------------------------- regression


def test_regression_errors_by_hand() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 2.0, 2.0, 4.5])
    m = metrics.regression_errors(y, pred, train_mean=2.0)
    # residuals -0.5, 0, 1, -0.5: SS_res 1.5, SS_tot 5
    assert m["rmse"] == pytest.approx(np.sqrt(1.5 / 4))
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 1.5 / 5) and m["r2"] == stats.r2(y, pred)
    assert m["bias"] == pytest.approx(0.0)
    assert m["max_abs_error"] == pytest.approx(1.0)
    assert m["baseline_rmse"] == pytest.approx(np.sqrt((1 + 0 + 1 + 4) / 4))
    result = metrics.regression(y, pred, 2.0, n_largest=2)
    assert [e["row"] for e in result["largest_errors"]] == [2, 0]
    assert result["largest_errors"][0] == {"row": 2, "actual": 3.0, "predicted": 2.0, "error": 1.0}
    assert list(result["residual_quantiles"]) == ["0.05", "0.25", "0.5", "0.75", "0.95"]
    assert result["residual_quantiles"]["0.5"] == pytest.approx(-0.25)
