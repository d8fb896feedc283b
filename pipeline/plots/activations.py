"""Figures of what the network does with data: activations, projections, worst errors (for a
regression: projections coloured by the target, the largest absolute errors)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from pipeline.plots import subplots
from pipeline.task import CLASSIFICATION, REGRESSION, fmt


class _Layer(Protocol):
    label: str
    activation: str
    post: np.ndarray


def _class_colours(n: int) -> list[Any]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]


def activation_distributions(
    layers: Sequence[_Layer], layer_stats: Sequence[Mapping[str, Any]], margin: float, share: float
) -> Figure:
    """Top: histogram of every output of each hidden layer on the test set.
    Bottom: per unit, the share of test rows on which it is active (ReLU and the other rectifiers:
    output > 0) or saturated (sigmoid/tanh); dead units sit at 0, saturated units right of the
    dashed line."""
    from pipeline import stats

    n = len(layers)
    fig, axes = subplots(2, n, figsize=(4.2 * n, 5.4), squeeze=False)
    for i, (layer, row) in enumerate(zip(layers, layer_stats, strict=True)):
        top, bottom = axes[0, i], axes[1, i]
        top.hist(layer.post.ravel(), bins=60, color="C0")
        top.set_yscale("log")
        top.set_title(
            f"{layer.label} ({layer.activation}, {row['units']} units)\n"
            f"{row['fraction']:.1%} of units {row['statistic']}",
            fontsize=9,
        )
        top.set_xlabel("activation value")
        top.set_ylabel("count (log)")
        if row["statistic"] == "dead":  # a rectifier (see pipeline.stats)
            per_unit = (layer.post > 0).mean(axis=0)
            bottom.set_xlabel("share of test rows with output > 0")
            bottom.axvline(0, color="C3", linestyle="--", linewidth=1, label="dead (never > 0)")
        else:
            per_unit = stats.saturated_mask(layer.post, layer.activation, margin).mean(axis=0)
            bottom.set_xlabel(f"share of test rows within {margin:g} of an asymptote")
            bottom.axvline(share, color="C3", linestyle="--", linewidth=1, label=f"saturated (≥ {share:g})")
        bottom.hist(per_unit, bins=np.linspace(0, 1, 26), color="C1")
        bottom.set_ylabel("units")
        bottom.legend(fontsize=7)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def class_activation_heatmap(layers: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str]) -> Figure:
    """Mean activation of each hidden unit (columns, already ordered) for each class (rows)."""
    n = len(layers)
    fig, axes = subplots(n, 1, figsize=(10, (0.3 * len(class_names) + 1.3) * n), squeeze=False)
    for ax, (label, means) in zip(axes[:, 0], layers, strict=True):
        image = ax.imshow(means, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(np.arange(len(class_names)), list(class_names), fontsize=7)
        ax.set_ylabel("true class")
        ax.set_xlabel(f"{label}: units, grouped by the class they respond to most")
        fig.colorbar(image, ax=ax, label="mean activation", pad=0.01)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class _Colouring:
    """How the projections colour their points, and how they name their score."""

    figsize: tuple[float, float]
    metric: str  # the score's name in ``separation``: <metric>_<source>_<method>
    score_label: str
    scatter: Callable[[Axes, np.ndarray], None]  # draws one panel's points (rows, 2)
    finish: Callable[[Figure, np.ndarray], None]  # the key to the colours, once the panels are drawn


def _by_class(y: np.ndarray, class_names: Sequence[str]) -> _Colouring:
    """One colour per class, with a legend of the classes."""
    colours = _class_colours(len(class_names))

    def scatter(ax: Axes, xy: np.ndarray) -> None:
        for k, name in enumerate(class_names):
            mask = y == k
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=7, color=colours[k], label=name, alpha=0.8)

    def finish(fig: Figure, axes: np.ndarray) -> None:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", title="class", markerscale=2.5, fontsize=8)
        fig.tight_layout(rect=(0, 0, 0.88, 1))

    return _Colouring((9.5, 8.5), "silhouette", "silhouette", scatter, finish)


def _by_target(y: np.ndarray, target: str) -> _Colouring:
    """The target's value on one continuous scale for all four panels (a colour means the same
    value everywhere), with a colorbar."""
    values = np.asarray(y, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    norm = Normalize(low, high)
    scale = ScalarMappable(norm, cmap="viridis")

    def scatter(ax: Axes, xy: np.ndarray) -> None:
        ax.scatter(xy[:, 0], xy[:, 1], s=7, c=values, cmap=scale.cmap, norm=norm, alpha=0.85)

    def finish(fig: Figure, axes: np.ndarray) -> None:
        fig.colorbar(scale, ax=axes, label=target, shrink=0.8, pad=0.02)

    return _Colouring((10.0, 8.5), "target_knn_r2", "neighbour R²", scatter, finish)


def projections(
    points: Mapping[tuple[str, str], np.ndarray],
    y: np.ndarray,
    class_names: Sequence[str],
    separation: Mapping[str, float],
    task: str = CLASSIFICATION,
) -> Figure:
    """2x2: PCA (top) and t-SNE (bottom) of the inputs (left) and of the last hidden layer (right),
    coloured by class; for a regression (``y`` the target's values, ``class_names`` [its name]) by
    the target's value on one continuous scale, with a colorbar."""
    colouring = _by_target(y, class_names[0]) if task == REGRESSION else _by_class(y, class_names)
    fig, axes = subplots(2, 2, figsize=colouring.figsize)
    titles = {"inputs": "inputs", "hidden": "last hidden layer"}
    for r, method in enumerate(("pca", "tsne")):
        for c, source in enumerate(("inputs", "hidden")):
            ax = axes[r, c]
            colouring.scatter(ax, points[(method, source)])
            score = separation.get(f"{colouring.metric}_{source}_{method}", float("nan"))
            ax.set_title(
                f"{'PCA' if method == 'pca' else 't-SNE'} of the {titles[source]}\n"
                f"{colouring.score_label} {score:.2f}",
                fontsize=9,
            )
            ax.set_xticks([])
            ax.set_yticks([])
    colouring.finish(fig, axes)
    return fig


def _probability_bars(
    ax: Axes, probs: np.ndarray, true: int, class_names: Sequence[str], *, horizontal: bool = False
) -> None:
    predicted = int(probs.argmax())
    colours = ["#bbbbbb"] * len(probs)
    colours[predicted] = "C3"
    colours[true] = "C2"
    positions = np.arange(len(probs))
    if horizontal:
        ax.barh(positions, probs, color=colours)
        ax.set_yticks(positions, list(class_names), fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability", fontsize=7)
    else:
        ax.bar(positions, probs, color=colours)
        ax.set_xticks(positions, list(class_names), fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(axis="y", labelsize=6)


def error_gallery(
    raw: np.ndarray,
    scaled: np.ndarray,
    outputs: np.ndarray,
    y_true: np.ndarray,
    class_names: Sequence[str],
    feature_names: Sequence[str],
    image_shape: Sequence[int] | None,
    task: str = CLASSIFICATION,
) -> Figure:
    """The worst errors: as images when the inputs are images (``image_shape``), else as a table.

    ``outputs``: the class probabilities (rows, classes); for a regression (``task``) the
    predictions (rows,) in the target's units, ``y_true`` the actual values and ``class_names``
    [the target's name]: the largest absolute errors, actual against predicted."""
    if task == REGRESSION:
        predicted, target = np.asarray(outputs, dtype=np.float64).reshape(len(outputs)), class_names[0]
        if image_shape:
            return regression_errors_images(raw, y_true, predicted, target, image_shape)
        return regression_errors_table(raw, scaled, y_true, predicted, target, feature_names)
    probs = outputs
    if image_shape:
        return error_gallery_images(raw, probs, y_true, class_names, image_shape)
    return error_gallery_table(raw, scaled, probs, y_true, class_names, feature_names)


def error_gallery_images(
    images: np.ndarray,
    probs: np.ndarray,
    y_true: np.ndarray,
    class_names: Sequence[str],
    image_shape: Sequence[int],
) -> Figure:
    """Worst errors first: each image with its true/predicted label and, below it, the
    probability the network gave each class (green: true class, red: predicted)."""
    n = len(images)
    cols = min(n, 6)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(1.9 * cols, 3.4 * rows))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.2, 1.0] * rows, hspace=0.75, wspace=0.35)
    for i in range(n):
        r, c = divmod(i, cols)
        ax_img = fig.add_subplot(grid[2 * r, c])
        ax_img.imshow(images[i].reshape(tuple(image_shape)), cmap="gray_r")
        ax_img.set_axis_off()
        true, pred = int(y_true[i]), int(probs[i].argmax())
        ax_img.set_title(
            f"true {class_names[true]} ({probs[i, true]:.0%})\n"
            f"pred {class_names[pred]} ({probs[i, pred]:.0%})",
            fontsize=8,
        )
        _probability_bars(fig.add_subplot(grid[2 * r + 1, c]), probs[i], true, class_names)
    return fig


def error_gallery_table(
    raw: np.ndarray,
    scaled: np.ndarray,
    probs: np.ndarray,
    y_true: np.ndarray,
    class_names: Sequence[str],
    feature_names: Sequence[str],
    top: int = 5,
) -> Figure:
    """Tabular data: per error, the class probabilities (left) and the ``top`` features whose
    values are most unusual (largest |standardized value|), with their raw values (right)."""

    def probabilities(ax: Axes, i: int) -> None:
        true, pred = int(y_true[i]), int(probs[i].argmax())
        _probability_bars(ax, probs[i], true, class_names, horizontal=True)
        ax.set_title(
            f"error {i + 1}: true {class_names[true]} ({probs[i, true]:.0%}), "
            f"pred {class_names[pred]} ({probs[i, pred]:.0%})",
            fontsize=8,
            loc="left",
        )

    height = max(1.6, 0.25 * len(class_names) + 0.9) * len(raw)
    return _error_rows(raw, scaled, feature_names, top, height, probabilities)


def _error_rows(
    raw: np.ndarray,
    scaled: np.ndarray,
    feature_names: Sequence[str],
    top: int,
    height: float,
    describe: Callable[[Axes, int], None],
) -> Figure:
    """One row per error: ``describe(ax, i)`` draws what the network made of error ``i`` (left),
    beside the ``top`` most unusual features of its row (right)."""
    n = len(raw)
    fig, axes = subplots(
        max(n, 1),
        2,
        figsize=(9.5, height),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.0, 1.6]},
    )
    for i in range(n):
        left, right = axes[i]
        describe(left, i)
        _unusual_features(right, raw[i], scaled[i], feature_names, top)
    if not n:
        for ax in axes[0]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def _unusual_features(
    ax: Axes, raw: np.ndarray, scaled: np.ndarray, feature_names: Sequence[str], top: int
) -> None:
    """A table of one row's ``top`` features with the largest |standardized value|."""
    order = np.argsort(-np.abs(scaled))[:top]
    cells = [[feature_names[j], f"{raw[j]:.4g}", f"{scaled[j]:+.2f}"] for j in order]
    ax.set_axis_off()
    table = ax.table(
        cellText=cells,
        colLabels=["most unusual feature", "value", "z-score"],
        loc="center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.1)


def _error_title(i: int, actual: float, predicted: float, target: str) -> str:
    off = predicted - actual
    side = "too high" if off > 0 else "too low"
    return (
        f"error {i + 1}: actual {fmt(actual)}, predicted {fmt(predicted)} ({fmt(abs(off))} {target} {side})"
    )


def regression_errors_table(
    raw: np.ndarray,
    scaled: np.ndarray,
    actual: np.ndarray,
    predicted: np.ndarray,
    target: str,
    feature_names: Sequence[str],
    top: int = 5,
) -> Figure:
    """Regression, tabular data: per error (largest |error| first), the actual value (green) and the
    prediction (red) on one axis in the target's units, shared by all rows (left), and the ``top``
    most unusual features with their raw values (right)."""
    both = np.concatenate([actual, predicted]) if len(raw) else np.zeros(1)
    pad = 0.05 * (float(both.max() - both.min()) or 1.0)
    limits = (float(both.min()) - pad, float(both.max()) + pad)

    def actual_and_predicted(ax: Axes, i: int) -> None:
        a, p = float(actual[i]), float(predicted[i])
        ax.plot([a, p], [0, 0], color="#888888", linewidth=2, zorder=1)
        ax.scatter([a], [0], color="C2", s=40, zorder=2, label="actual")
        ax.scatter([p], [0], color="C3", s=40, marker="D", zorder=2, label="predicted")
        ax.set_xlim(*limits)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(target, fontsize=7)
        ax.set_title(_error_title(i, a, p, target), fontsize=8, loc="left")
        if i == 0:
            ax.legend(fontsize=7, loc="upper right", ncols=2, frameon=False)

    height = 1.25 * max(len(raw), 1) + 0.4
    return _error_rows(raw, scaled, feature_names, top, height, actual_and_predicted)


def regression_errors_images(
    images: np.ndarray, actual: np.ndarray, predicted: np.ndarray, target: str, image_shape: Sequence[int]
) -> Figure:
    """Regression on images: the largest absolute errors first, each image with its actual value and
    the network's prediction."""
    n = len(images)
    cols = max(1, min(n, 6))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = subplots(rows, cols, figsize=(1.9 * cols, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i].reshape(tuple(image_shape)), cmap="gray_r")
            ax.set_title(
                f"actual {fmt(float(actual[i]))}\npred {fmt(float(predicted[i]))}\n"
                f"error {float(predicted[i] - actual[i]):+.4g}",
                fontsize=8,
            )
    fig.suptitle(f"largest absolute errors ({target})", fontsize=9)
    fig.tight_layout()
    return fig
