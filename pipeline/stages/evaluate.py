"""Stage 3: score the trained model on the test split.

    python -m pipeline evaluate

Classification: accuracy, macro F1, per-class precision/recall/F1, log loss and expected
calibration error; the confusion matrix; figures; a metrics JSON and per-sample (actual,
predicted) rows for DVC's confusion plot.

Regression: RMSE, MAE and R² in the target's units, beside the RMSE of always predicting the
train mean; predicted against actual, residuals against predicted and the residual
distribution; per-sample (actual, predicted) rows for DVC's scatter plot.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from pipeline import artifacts, io, layout, plots, task
from pipeline.config import Config
from pipeline.tracking import records, runs

log = logging.getLogger(__name__)


def predict_proba(net: torch.nn.Module, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities (n, n_classes) from the network's logits, in eval mode."""
    net.eval()
    with torch.inference_mode():
        parts = [
            torch.softmax(net(torch.from_numpy(X[i : i + batch_size])), dim=1)
            for i in range(0, len(X), batch_size)
        ]
    return torch.cat(parts).numpy().astype(np.float64)


def predict_values(net: torch.nn.Module, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """A regression network's predictions (n,), in the target's units (train folded the scaling
    into the network), in eval mode."""
    net.eval()
    with torch.inference_mode():
        parts = [
            net(torch.from_numpy(X[i : i + batch_size])).reshape(-1) for i in range(0, len(X), batch_size)
        ]
    return torch.cat(parts).numpy().astype(np.float64)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, train_mean: float) -> dict[str, float]:
    """RMSE, MAE, R², the mean residual (bias) and the largest absolute error, in the target's units;
    ``baseline_rmse``: the RMSE of always predicting ``train_mean`` (what R² = 0 means)."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    residual = y_true - y_pred
    spread = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": 1.0 - float(np.sum(residual**2)) / spread if spread > 0 else float("nan"),
        "bias": float(np.mean(residual)),
        "max_abs_error": float(np.max(np.abs(residual))),
        "baseline_rmse": float(np.sqrt(np.mean((y_true - train_mean) ** 2))),
        "n_test": int(len(y_true)),
    }


def evaluate_regression(
    y_true: np.ndarray, y_pred: np.ndarray, train_mean: float, n_largest: int = 5
) -> dict[str, Any]:
    """Pure core (regression): targets and predictions in, every test statistic out, with the
    ``n_largest`` largest errors (test row, actual, predicted, error = actual - predicted)."""
    residual = np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)
    order = np.argsort(-np.abs(residual), kind="stable")[:n_largest]
    return {
        "metrics": regression_metrics(y_true, y_pred, train_mean),
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
            for q, v in zip(
                (0.05, 0.25, 0.5, 0.75, 0.95),
                np.quantile(residual, [0.05, 0.25, 0.5, 0.75, 0.95]),
                strict=True,
            )
        },
        "y_pred": np.asarray(y_pred, np.float64),
    }


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


def evaluate(y_true: np.ndarray, probs: np.ndarray, class_names: list[str], n_bins: int) -> dict[str, Any]:
    """Pure core: labels and probabilities in, every test statistic out."""
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
        "y_pred": y_pred,
    }


def figure_jobs(
    result: dict[str, Any], history: list[dict[str, float]], class_names: list[str]
) -> dict[str, tuple[Any, ...]]:
    """Figure id (pipeline.plots.figures) -> the arguments of its drawing function, in report order."""
    pc, rel = result["per_class"], result["reliability"]
    return {
        "training_curves": (history,),
        "confusion_matrix": (np.asarray(result["confusion"]), class_names),
        "per_class": (class_names, *([r[k] for r in pc] for k in ("precision", "recall", "f1"))),
        "reliability": (
            *([r[k] for r in rel] for k in ("confidence", "accuracy", "count")),
            result["metrics"]["ece"],
        ),
    }


def regression_figure_jobs(
    result: dict[str, Any],
    history: list[dict[str, float]],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    target: str,
) -> dict[str, tuple[Any, ...]]:
    """Figure id -> drawing arguments for a regression run, in report order."""
    m = result["metrics"]
    residual = np.asarray(y_true, np.float64) - y_pred
    return {
        "training_curves": (history,),
        "predicted_vs_actual": (y_true, y_pred, target, m["rmse"], m["r2"]),
        "residuals_vs_predicted": (y_pred, residual, target),
        "residual_distribution": (residual, target, m["rmse"]),
    }


def run(cfg: Config) -> dict[str, Any]:
    history = [{k: float(v) for k, v in row.items()} for row in io.read_csv(cfg.paths.history, "train")]
    arrays, summary = artifacts.load_data(cfg)
    net = artifacts.load_model(cfg)
    run_info = runs.load_run(layout.run_file(cfg))
    folder = layout.figure_dir(cfg.paths.evaluate)
    if task.is_regression(summary):
        y_true = arrays["y_test"]
        values = predict_values(net, arrays["X_test"])
        result = evaluate_regression(y_true, values, summary["target_mean"])
        result.pop("y_pred")
        jobs = regression_figure_jobs(result, history, y_true, values, task.target_name(summary))
        figures = plots.render_all(jobs, folder, cfg.report.dpi)
        return _write_regression(cfg, result, y_true, values, figures, run_info, summary)
    classes, y_test = summary["class_names"], arrays["y_test"]
    probabilities = predict_proba(net, arrays["X_test"])
    result = evaluate(y_test, probabilities, classes, cfg.evaluate.calibration_bins)
    y_pred = result.pop("y_pred")
    figures = plots.render_all(figure_jobs(result, history, classes), folder, cfg.report.dpi)

    io.write_json(layout.evaluation_file(cfg), result)
    io.write_json(cfg.paths.evaluate_metrics, result["metrics"])
    io.write_csv(
        cfg.paths.predictions,
        ("actual", "predicted"),
        [(classes[t], classes[p]) for t, p in zip(y_test, y_pred, strict=True)],
    )
    io.write_csv(
        cfg.paths.calibration,
        ("confidence", "accuracy", "count"),
        [(r["confidence"], r["accuracy"], r["count"]) for r in result["reliability"]],
    )
    io.write_csv(cfg.paths.regression_plot, ("actual", "predicted"), [])  # a regression's plot: no rows
    records.write(
        layout.mlflow_record(cfg.paths.evaluate),
        run_info,
        {f"test_{k}": v for k, v in result["metrics"].items()},
        [*figures, layout.evaluation_file(cfg)],
        "evaluate",
    )
    m = result["metrics"]
    log.info(
        "Test accuracy %.4f, macro F1 %.4f, log loss %.4f, ECE %.4f on %d samples",
        m["accuracy"],
        m["macro_f1"],
        m["log_loss"],
        m["ece"],
        m["n_test"],
    )
    return result


def _write_regression(
    cfg: Config,
    result: dict[str, Any],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    figures: list[Any],
    run_info: Any,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """The regression run's outputs; the classification plots' files are written with no rows
    (DVC wants every declared output), so `dvc plots show` draws only what applies."""
    io.write_json(layout.evaluation_file(cfg), {"task": task.REGRESSION, **result})
    io.write_json(cfg.paths.evaluate_metrics, result["metrics"])
    io.write_csv(
        cfg.paths.regression_plot,
        ("actual", "predicted"),
        [(float(t), float(p)) for t, p in zip(y_true, y_pred, strict=True)],
    )
    io.write_csv(cfg.paths.predictions, ("actual", "predicted"), [])
    io.write_csv(cfg.paths.calibration, ("confidence", "accuracy", "count"), [])
    records.write(
        layout.mlflow_record(cfg.paths.evaluate),
        run_info,
        {f"test_{k}": v for k, v in result["metrics"].items()},
        [*figures, layout.evaluation_file(cfg)],
        "evaluate",
    )
    m = result["metrics"]
    target = task.target_name(summary)
    log.info(
        "Test RMSE %s, MAE %s %s (predicting the train mean: RMSE %s), R² %.4f on %d samples",
        task.fmt(m["rmse"]),
        task.fmt(m["mae"]),
        target,
        task.fmt(m["baseline_rmse"]),
        m["r2"],
        m["n_test"],
    )
    return result


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
