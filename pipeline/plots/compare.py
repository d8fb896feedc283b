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
