"""Figures of training and test performance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.plots import subplots


def training_curves(history: Sequence[dict[str, float]]) -> Figure:
    """Loss and accuracy per epoch, train vs validation, side by side."""
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(9, 3.4))
    epochs = [row["epoch"] for row in history]
    for ax, metric, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
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
