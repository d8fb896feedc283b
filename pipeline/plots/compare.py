"""Figures of many runs side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.plots import subplots


def _as_numbers(values: Sequence[str]) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in values])
    except ValueError:
        return None


def param_vs_metric(values: Sequence[str], scores: Sequence[float], param: str, metric: str) -> Figure:
    """One point per run: the hyperparameter's value against the metric.

    Numeric values get a numeric axis (logarithmic when they span more than two
    decades, as learning rates do); anything else is treated as categories.
    """
    fig, ax = subplots(figsize=(4.6, 3.2))
    numbers = _as_numbers(values)
    if numbers is not None and len(set(numbers.tolist())) > 1:
        ax.scatter(numbers, scores, s=36, zorder=3)
        positive = numbers[numbers > 0]
        if len(positive) == len(numbers) and positive.max() / positive.min() > 100:
            ax.set_xscale("log")
    else:
        categories = sorted(set(values), key=str)
        x = [categories.index(v) for v in values]
        ax.scatter(x, scores, s=36, zorder=3)
        ax.set_xticks(range(len(categories)), categories, rotation=20 if len(categories) > 4 else 0)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def overlaid_curves(curves: Mapping[str, Sequence[float]], ylabel: str) -> Figure:
    """One line per run over epochs."""
    fig, ax = subplots(figsize=(6.4, 3.4))
    for label, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", markersize=2.5, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if 0 < len(curves) <= 12:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _shares(importance: np.ndarray) -> np.ndarray:
    """Each row (a class's mean |SHAP| per feature) as shares summing to 1: two runs' attributions
    differ in scale (their logits do), not only in where they put weight."""
    a = np.asarray(importance, dtype=np.float64)
    total = a.sum(axis=-1, keepdims=True)
    return np.divide(a, total, out=np.zeros_like(a), where=total > 0)


def importance_difference_maps(
    best: np.ndarray,
    second: np.ndarray,
    image_shape: Sequence[int],
    class_names: Sequence[str],
    names: Sequence[str],
) -> Figure:
    """Per class, the share of attention each pixel gets in the best run minus in the runner-up
    (``best``, ``second``: (classes, pixels) mean |SHAP|): red where the best run looks more."""
    diff = _shares(best) - _shares(second)
    n = len(diff)
    cols = min(5, n)
    rows = int(np.ceil(n / cols))
    fig, axes = subplots(rows, cols, figsize=(2.0 * cols + 0.8, 2.1 * rows + 0.5), squeeze=False)
    limit = float(np.abs(diff).max()) or 1.0
    image = None
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        image = ax.imshow(diff[i].reshape(tuple(image_shape)), cmap="bwr", vmin=-limit, vmax=limit)
        ax.set_title(str(class_names[i]), fontsize=9)
    if image is not None:
        fig.colorbar(
            image, ax=axes.ravel().tolist(), shrink=0.8, label=f"share in {names[0]} - in {names[1]}"
        )
    return fig


def importance_changes(
    best: np.ndarray, second: np.ndarray, feature_names: Sequence[str], names: Sequence[str], top: int = 15
) -> Figure:
    """The features whose share of global importance (summed over classes) changed most from
    the runner-up to the best run."""
    diff = _shares(np.asarray(best).sum(axis=0)) - _shares(np.asarray(second).sum(axis=0))
    order = np.argsort(-np.abs(diff))[:top][::-1]
    fig, ax = subplots(figsize=(6.5, 0.3 * len(order) + 1.4))
    ax.barh(range(len(order)), diff[order], color=["#d62728" if d > 0 else "#1f77b4" for d in diff[order]])
    ax.set_yticks(range(len(order)), [str(feature_names[i]) for i in order], fontsize=8)
    ax.axvline(0, color="#555555", lw=0.8)
    ax.set_xlabel(f"share of importance in {names[0]} minus in {names[1]}")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
