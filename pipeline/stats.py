"""Statistics of a network's weights and activations: arrays in, numbers out.

No torch, no plotting, no files: the visualize stage and the training callback
call these, and tests/test_stats.py checks each one on hand-made cases.

Definitions used in the report:

- A ReLU unit is **dead** on a data set when its output is never positive on any
  row of it: it passes no signal and its incoming weights get no gradient. The same holds for
  the other rectifiers (leaky ReLU, ELU, SELU, GELU, SiLU, softplus), whose output is positive
  exactly where their input is (softplus: always, so none is ever dead): a unit never
  positive only ever sees the flat or barely sloped negative side.
- A sigmoid/tanh unit is **saturated** when its output lies within ``margin`` of
  an asymptote (sigmoid < m or > 1 - m; |tanh| > 1 - m) on at least ``share`` of
  the rows: its derivative is then almost 0, so it learns (and varies) little.
- For regression, a 2-D projection's **neighbour R²** says how well its layout orders the
  target: each row's target guessed by the mean of its nearest neighbours' (``neighbour_r2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Quantiles recorded for weight distributions (training history and report).
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
# Activations bounded on both sides, whose idle units are saturated rather than dead.
SATURATING = ("sigmoid", "tanh")


def dead_fraction(acts: np.ndarray) -> float:
    """Share of units (columns of ``acts``, shape (rows, units)) never positive on any row."""
    if acts.size == 0:
        return 0.0
    return float(np.mean(acts.max(axis=0) <= 0))


def saturated_mask(acts: np.ndarray, activation: str, margin: float = 0.01) -> np.ndarray:
    """Per value: True where the output is within ``margin`` of the activation's asymptote."""
    if activation == "sigmoid":
        return (acts < margin) | (acts > 1 - margin)
    if activation == "tanh":
        return np.abs(acts) > 1 - margin
    raise ValueError(f"saturation is defined for sigmoid and tanh, not {activation!r}")


def saturated_fraction(acts: np.ndarray, activation: str, margin: float = 0.01, share: float = 0.9) -> float:
    """Share of units saturated on at least ``share`` of the rows (see the module docstring)."""
    if acts.size == 0:
        return 0.0
    per_unit = saturated_mask(acts, activation, margin).mean(axis=0)  # (units,)
    return float(np.mean(per_unit >= share))


def inactive_statistic(activation: str) -> str:
    """What makes a unit of ``activation`` (a lower-case module name: "relu", "gelu", "tanh", ...)
    idle: "saturated" for sigmoid and tanh, "dead" for the rectifiers."""
    return "saturated" if activation in SATURATING else "dead"


def inactive_fraction(acts: np.ndarray, activation: str, margin: float = 0.01, share: float = 0.9) -> float:
    """Dead fraction for ReLU and the other rectifiers, saturated fraction for sigmoid/tanh: the
    units that barely learn."""
    if inactive_statistic(activation) == "dead":
        return dead_fraction(acts)
    return saturated_fraction(acts, activation, margin, share)


def class_means(acts: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean activation of each unit over the rows of each class: (n_classes, units).

    A class with no rows gets NaN (not 0, which would read as "unit silent").
    """
    out = np.full((n_classes, acts.shape[1]), np.nan)
    for k in range(n_classes):
        rows = y == k
        if rows.any():
            out[k] = acts[rows].mean(axis=0)
    return out


def unit_order(means: np.ndarray) -> np.ndarray:
    """Order of units (columns of ``means``, (classes, units)) that makes class structure visible.

    Each unit's class means are z-scored across classes; units are grouped by the
    class they respond to most (its preferred class, in class order) and, within a
    group, sorted by how strongly they prefer it. Units that do not vary across
    classes (std 0) go last.
    """
    std = np.nanstd(means, axis=0)
    z = np.where(std > 0, (means - np.nanmean(means, axis=0)) / np.where(std > 0, std, 1), 0.0)
    preferred = np.where(std > 0, np.nanargmax(np.nan_to_num(z, nan=-np.inf), axis=0), means.shape[0])
    strength = np.nanmax(z, axis=0)
    return np.lexsort((-strength, preferred))  # last key is the primary one


def quantiles(values: np.ndarray, qs: Sequence[float] = QUANTILES) -> list[float]:
    """The ``qs`` quantiles of all values (flattened), linear interpolation."""
    return [float(v) for v in np.quantile(np.asarray(values, dtype=np.float64).ravel(), qs)]


def worst_errors(probs: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Rows the network got wrong, lowest probability on the true class first, at most ``n``."""
    wrong = np.flatnonzero(probs.argmax(axis=1) != y)
    p_true = probs[wrong, y[wrong]]
    return wrong[np.argsort(p_true, kind="stable")][:n]


def largest_errors(predicted: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Regression: the rows with the largest absolute error |predicted - y|, largest first, at most
    ``n`` (ties in row order)."""
    error = np.abs(np.asarray(predicted, dtype=np.float64) - np.asarray(y, dtype=np.float64))
    return np.argsort(-error, kind="stable")[: max(0, n)]


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination of ``y_pred`` for ``y_true`` (1: equal; 0: no better than their
    mean; negative: worse); NaN when ``y_true`` is constant."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return 1.0 - float(np.sum((y_true - y_pred) ** 2)) / total if total > 0 else float("nan")


def neighbour_r2(points: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """How well a 2-D projection orders a numeric target: R² (1 - SSE / SST) of predicting each
    row's ``y`` by the mean ``y`` of its ``k`` nearest other rows in ``points``. 1: neighbours share
    their target; about 0 (or below): the layout says nothing about it. The regression counterpart
    of the silhouette; NaN with fewer than three rows or a constant target."""
    from sklearn.neighbors import NearestNeighbors

    y = np.asarray(y, dtype=np.float64)
    if len(y) < 3:
        return float("nan")
    # kneighbors() without X: each row's neighbours among the others, never itself
    neighbours = NearestNeighbors(n_neighbors=min(k, len(y) - 1)).fit(points).kneighbors()[1]
    return r2(y, y[neighbours].mean(axis=1))


def silhouette(points: np.ndarray, y: np.ndarray) -> float:
    """Silhouette score of the class labels in ``points`` (-1..1; higher: classes better separated).

    NaN when fewer than two classes are present.
    """
    from sklearn.metrics import silhouette_score

    if len(np.unique(y)) < 2 or len(y) < 3:
        return float("nan")
    return float(silhouette_score(points, y))


def subsample(n_rows: int, n: int, seed: int) -> np.ndarray:
    """At most ``n`` distinct row indices (all rows if there are fewer), sorted, seeded."""
    if n_rows <= n:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=n, replace=False))


def gradient_depth_ratio(history: dict[str, Any]) -> float:
    """How many times larger the output-side layer's weight gradient was than the input-side
    layer's, over the whole training (the ratio of their mean per-epoch norms; NaN with fewer than
    two layers or no gradient). Far above 1 (10x, 100x): the gradient vanishes toward the input."""
    norms = [np.asarray(entry["grad_norm"], dtype=float) for entry in history.get("layers", {}).values()]
    if len(norms) < 2 or not len(norms[0]) or not len(norms[-1]) or norms[0].mean() == 0:
        return float("nan")
    return float(norms[-1].mean() / norms[0].mean())
