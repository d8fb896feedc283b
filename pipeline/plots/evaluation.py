"""Figures of training and test performance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.plots import subplots


def training_curves(history: Sequence[dict[str, float]]) -> Figure:
    """Loss and accuracy (a regression: RMSE in the target's units) per epoch, train vs validation,
    side by side."""
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(9, 3.4))
    epochs = [row["epoch"] for row in history]
    regression = any("val_rmse" in row for row in history)
    panels = (
        ((ax_loss, "loss", "loss (scaled target)"), (ax_acc, "rmse", "RMSE (target units)"))
        if regression
        else ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy"))
    )
    for ax, metric, label in panels:
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{split}_{metric}", np.nan) for row in history]
            ax.plot(epochs, values, style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    best = int(np.nanargmin([row.get("val_loss", np.nan) for row in history]))
    ax_loss.axvline(epochs[best], color="grey", linestyle=":", label="best")
    fig.tight_layout()
    return fig


def confusion_matrix(cm: np.ndarray, labels: Sequence[str]) -> Figure:
    """Counts of (true, predicted) pairs; the diagonal is correct, off-diagonal cells are errors."""
    # Plain matplotlib: seaborn's heatmap looked the same and its import cost ~1 s per evaluate run.
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = subplots(figsize=(size, size * 0.85))
    image = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, list(labels))
    ax.set_yticks(ticks, list(labels))
    if len(labels) <= 20:
        # Dark text on light cells, light text on dark ones (as seaborn's annot does).
        threshold = (cm.max() if cm.size else 0) / 2
        for (i, j), count in np.ndenumerate(cm):
            color = "white" if count > threshold else "black"
            ax.text(j, i, f"{int(count)}", ha="center", va="center", color=color, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.tight_layout()
    return fig


def per_class_scores(
    labels: Sequence[str], precision: Sequence[float], recall: Sequence[float], f1: Sequence[float]
) -> Figure:
    """Grouped bars of precision, recall and F1 per class."""
    fig, ax = subplots(figsize=(max(5.0, 0.6 * len(labels) + 2), 3.2))
    x = np.arange(len(labels))
    width = 0.27
    for offset, values, name in ((-width, precision, "precision"), (0, recall, "recall"), (width, f1, "F1")):
        ax.bar(x + offset, values, width, label=name)
    ax.set_xticks(x, list(labels))
    low = min(min(precision), min(recall), min(f1))
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_xlabel("class")
    ax.legend(loc="lower right", ncols=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def reliability_diagram(
    confidence: Sequence[float], accuracy: Sequence[float], counts: Sequence[int], ece: float
) -> Figure:
    """Accuracy against confidence per bin; a calibrated model follows the diagonal."""
    fig, ax = subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    sizes = 20 + 200 * np.asarray(counts) / max(1, max(counts))
    ax.scatter(confidence, accuracy, s=sizes, zorder=3, label="bins (size = samples)")
    ax.plot(confidence, accuracy, zorder=2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean predicted confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE = {ece:.3f}")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def predicted_vs_actual(
    actual: Sequence[float], predicted: Sequence[float], target: str, rmse: float, r2: float
) -> Figure:
    """Each test sample's prediction against its true value; perfect predictions lie on the diagonal."""
    fig, ax = subplots(figsize=(4.6, 4.3))
    actual_, predicted_ = np.asarray(actual, np.float64), np.asarray(predicted, np.float64)
    low = float(min(actual_.min(), predicted_.min()))
    high = float(max(actual_.max(), predicted_.max()))
    pad = 0.04 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "--", color="grey", label="perfect prediction")
    ax.scatter(actual_, predicted_, s=14, alpha=0.7, edgecolors="none", label="test samples")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(f"RMSE {rmse:.4g}, R² {r2:.3f}")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def residuals_vs_predicted(predicted: Sequence[float], residuals: Sequence[float], target: str) -> Figure:
    """Residual (actual - predicted) against the prediction, with a running median: a flat band
    around 0 is what a good fit leaves; a slope or a funnel is structure the network missed."""
    fig, ax = subplots(figsize=(5.6, 3.6))
    x, r = np.asarray(predicted, np.float64), np.asarray(residuals, np.float64)
    ax.axhline(0.0, color="grey", linestyle="--", label="no error")
    ax.scatter(x, r, s=14, alpha=0.7, edgecolors="none", label="test samples")
    if len(x) >= 20:
        # A centred window of a fifth of the samples, only where it is full (no ragged ends).
        order = np.argsort(x)
        window = max(9, len(x) // 5) | 1
        half = window // 2
        sorted_r = r[order]
        centres = range(half, len(x) - half)
        medians = [np.median(sorted_r[i - half : i + half + 1]) for i in centres]
        ax.plot(
            x[order][half : len(x) - half], medians, color="C3", label=f"running median ({window} samples)"
        )
    ax.set_xlabel(f"predicted {target}")
    ax.set_ylabel(f"residual (actual - predicted) {target}")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def residual_distribution(residuals: Sequence[float], target: str, rmse: float) -> Figure:
    """Histogram of the residuals, with their mean and a normal curve of the same spread."""
    fig, ax = subplots(figsize=(5.6, 3.4))
    r = np.asarray(residuals, np.float64)
    bins = int(np.clip(np.sqrt(len(r)) * 1.5, 8, 40))
    ax.hist(r, bins=bins, density=True, alpha=0.75, label="test residuals")
    spread = float(r.std()) or 1.0
    grid = np.linspace(r.min() - spread, r.max() + spread, 200)
    normal = np.exp(-0.5 * ((grid - r.mean()) / spread) ** 2) / (spread * np.sqrt(2 * np.pi))
    ax.plot(grid, normal, color="C3", label="normal, same mean and spread")
    ax.axvline(0.0, color="grey", linestyle="--")
    ax.axvline(float(r.mean()), color="C1", linestyle=":", label=f"mean {r.mean():.3g} (bias)")
    ax.set_xlabel(f"residual (actual - predicted) {target}")
    ax.set_ylabel("density")
    ax.set_title(f"RMSE {rmse:.4g}")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
