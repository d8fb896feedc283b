"""Test-set scores: labels or targets and the network's predictions in, numbers out.

No torch, no files, no plotting: the task objects (pipeline.task) call these for the evaluate stage,
and tests/test_metrics.py checks each one on hand-made cases.

    from pipeline import metrics
    metrics.classification(y_test, probabilities, class_names, n_bins=10)["metrics"]["accuracy"]
    metrics.regression(y_test, predictions, train_mean)["metrics"]["rmse"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline import stats

# The residual quantiles a regression's evaluation records.
RESIDUAL_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


# ------------------------------------------------------------------------------ classification


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """cm[i, j] = number of samples of true class i predicted as j."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def log_loss(y_true: np.ndarray, probs: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true class."""
    p = np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0)
    return float(-np.mean(np.log(p)))


def reliability(y_true: np.ndarray, probs: np.ndarray, n_bins: int) -> list[dict[str, float]]:
    """Non-empty equal-width confidence bins: mean confidence, accuracy and count per bin."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    # Bin i holds confidences in (i/n, (i+1)/n]; confidence is never 0 for a softmax.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            rows.append(
                {
                    "lower": b / n_bins,
                    "upper": (b + 1) / n_bins,
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return rows


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """Sum over bins of (bin share of samples) x |accuracy - confidence|."""
    rows = reliability(y_true, probs, n_bins)
    n = len(y_true)
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in rows))


def classification(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], n_bins: int
) -> dict[str, Any]:
    """Labels (n,) and class probabilities (n, classes) in, every test statistic out: the headline
    metrics, per-class scores, the confusion matrix, its five largest off-diagonal cells and the
    reliability bins (``n_bins`` equal-width confidence bins)."""
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, len(class_names))
    scores = per_class(cm)
    off_diagonal = [
        {"true": class_names[i], "predicted": class_names[j], "count": int(cm[i, j])}
        for i, j in zip(*np.nonzero(cm - np.diag(np.diag(cm))), strict=True)
    ]
    return {
        "metrics": {
            "accuracy": float((y_pred == y_true).mean()),
            "macro_f1": float(scores["f1"].mean()),
            "log_loss": log_loss(y_true, probs),
            "ece": expected_calibration_error(y_true, probs, n_bins),
            "n_test": int(len(y_true)),
        },
        "per_class": [
            {"class": name, **{k: v[i].item() for k, v in scores.items()}}
            for i, name in enumerate(class_names)
        ],
        "confusion": cm.tolist(),
        "top_confusions": sorted(off_diagonal, key=lambda r: -r["count"])[:5],
        "reliability": reliability(y_true, probs, n_bins),
    }


# ---------------------------------------------------------------------------------- regression


def regression_errors(y_true: np.ndarray, y_pred: np.ndarray, train_mean: float) -> dict[str, float]:
    """RMSE, MAE, R², the mean residual (bias) and the largest absolute error, in the target's units;
    ``baseline_rmse``: the RMSE of always predicting ``train_mean`` (what R² = 0 means)."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    residual = y_true - y_pred
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": stats.r2(y_true, y_pred),
        "bias": float(np.mean(residual)),
        "max_abs_error": float(np.max(np.abs(residual))),
        "baseline_rmse": float(np.sqrt(np.mean((y_true - train_mean) ** 2))),
        "n_test": int(len(y_true)),
    }


def regression(
    y_true: np.ndarray, y_pred: np.ndarray, train_mean: float, n_largest: int = 5
) -> dict[str, Any]:
    """Targets and predictions (n,) in, every test statistic out: the errors (``regression_errors``),
    the ``n_largest`` largest errors (test row, actual, predicted, error = actual - predicted) and
    quantiles of the residuals."""
    residual = np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)
    order = np.argsort(-np.abs(residual), kind="stable")[:n_largest]
    return {
        "metrics": regression_errors(y_true, y_pred, train_mean),
        "largest_errors": [
            {
                "row": int(i),
                "actual": float(y_true[i]),
                "predicted": float(y_pred[i]),
                "error": float(residual[i]),
            }
            for i in order
        ],
        "residual_quantiles": {
            str(q): float(v)
            for q, v in zip(RESIDUAL_QUANTILES, np.quantile(residual, RESIDUAL_QUANTILES), strict=True)
        },
    }
