"""Figures of the explanation's checks: the weight-randomisation sanity check and the surrogate tree.

The surrogate's figures draw a classification tree by default; given ``target`` (the regression
target's name) they draw a regression tree: fidelity as R², leaves as predicted values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pipeline.plots import subplots

RANK, SSIM, SIGNED = "#1f77b4", "#ff7f0e", "#9467bd"


def _band(ax: Any, x: np.ndarray, values: np.ndarray, color: str, label: str) -> None:
    """Median line with the 25-75% band over samples (rows of ``values`` are steps)."""
    with np.errstate(all="ignore"):
        q25, med, q75 = (np.nanquantile(values, q, axis=1) for q in (0.25, 0.5, 0.75))
    ax.fill_between(x, q25, q75, color=color, alpha=0.2)
    ax.plot(x, med, "o-", color=color, ms=4, label=label)


def sanity_curve(
    layers: Sequence[str],
    cascade_rank: np.ndarray,
    cascade_signed: np.ndarray,
    single_rank: np.ndarray,
    cascade_ssim: np.ndarray | None,
    single_ssim: np.ndarray | None,
    threshold: float,
) -> Figure:
    """Left: similarity to the original attributions as layers are randomised from the output
    back (0: none), median and 25-75% over samples. Right: each layer randomised alone."""
    fig, (left, right) = subplots(1, 2, figsize=(10, 4), sharey=True)
    n = len(layers)
    x = np.arange(n + 1)
    ones = np.ones((1, cascade_rank.shape[1]))
    _band(left, x, np.vstack([ones, cascade_rank]), RANK, "rank correlation of |attribution|")
    _band(left, x, np.vstack([ones, cascade_signed]), SIGNED, "rank correlation with signs")
    if cascade_ssim is not None:
        _band(left, x, np.vstack([ones, cascade_ssim]), SSIM, "SSIM of the maps")
    left.axhline(threshold, color="#d62728", ls="--", lw=1, label=f"check threshold {threshold:g}")
    left.set_xticks(
        x, ["none", *(f"+{name}" for name in reversed(layers))], rotation=30, ha="right", fontsize=8
    )
    left.set_xlabel("layers randomised (cascading, from the output)")
    left.set_ylabel("similarity to the trained network's attributions")
    left.set_ylim(-0.3, 1.05)
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="upper right")
    positions = np.arange(n)
    width = 0.38 if single_ssim is not None else 0.6
    with np.errstate(all="ignore"):
        right.bar(positions, np.nanmedian(single_rank, axis=1), width, color=RANK, label="rank correlation")
        if single_ssim is not None:
            right.bar(positions + width, np.nanmedian(single_ssim, axis=1), width, color=SSIM, label="SSIM")
    right.axhline(threshold, color="#d62728", ls="--", lw=1)
    right.set_xticks(
        positions + (width / 2 if single_ssim is not None else 0),
        list(layers),
        rotation=30,
        ha="right",
        fontsize=8,
    )
    right.set_xlabel("layer randomised alone")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sanity_maps(maps: np.ndarray, layers: Sequence[str], image_shape: Sequence[int]) -> Figure:
    """Rows: a few explained images; columns: their attribution map for the predicted class on
    the trained network, then after each cascading randomisation step."""
    steps, m = maps.shape[0], maps.shape[1]
    fig, axes = subplots(m, steps, figsize=(1.3 * steps + 0.5, 1.3 * m + 0.6), squeeze=False)
    titles = ["trained", *(f"+{name}" for name in reversed(layers))]
    for i in range(m):
        for j in range(steps):
            ax = axes[i, j]
            img = maps[j, i].reshape(tuple(image_shape))
            limit = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="bwr", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
    fig.tight_layout()
    return fig


def surrogate_fidelity(
    depths: np.ndarray,
    fidelity: np.ndarray,
    accuracy: np.ndarray,
    depth: int,
    network_accuracy: float,
    target: str | None = None,
) -> Figure:
    """Fidelity to the network and the tree's own test accuracy against the depth; the chosen
    depth marked, the network's accuracy for reference. For regression (``target`` given) all three
    are R² on the test split: to the network's predictions, and (tree, network) to the true target."""
    fig, ax = subplots(figsize=(6, 4))
    if target:
        labels = (
            f"fidelity (R² of the tree to the network's predicted {target})",
            f"tree R² (against the true {target})",
            f"network R² {network_accuracy:.2f}",
        )
    else:
        labels = (
            "fidelity (tree agrees with the network)",
            "tree accuracy (against the true labels)",
            f"network accuracy {network_accuracy:.2f}",
        )
    ax.plot(depths, fidelity, "o-", color="#2ca02c", ms=4, label=labels[0])
    ax.plot(depths, accuracy, "s-", color="#7f7f7f", ms=4, label=labels[1])
    ax.axhline(network_accuracy, color="#1f77b4", ls=":", lw=1, label=labels[2])
    ax.axvline(depth, color="#d62728", ls="--", lw=1, label=f"chosen depth {depth}")
    ax.set_xlabel("tree depth")
    ax.set_xticks(depths)
    if target:
        # R² can be negative (worse than predicting the mean) for a shallow tree: show down to -1.
        with np.errstate(all="ignore"):
            lowest = float(np.nanmin(np.concatenate([fidelity, accuracy, [network_accuracy, 0.0]])))
        ax.set_ylabel("R² on the test split")
        ax.set_ylim(max(lowest, -1.0) - 0.05, 1.02)
    else:
        ax.set_ylabel("share of test samples")
        ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _tree_layout(tree: Any, max_depth: int) -> dict[int, tuple[float, int]]:
    """Node -> (x, depth) for the nodes down to ``max_depth``: leaves of the shown tree spread
    evenly, each inner node centred over its children."""
    placed: dict[int, tuple[float, int]] = {}
    next_x = [0.0]

    def place(node: int, depth: int) -> float:
        if tree.is_leaf(node) or depth == max_depth:
            x = next_x[0]
            next_x[0] += 1
        else:
            x = (place(int(tree.left[node]), depth + 1) + place(int(tree.right[node]), depth + 1)) / 2
        placed[node] = (x, depth)
        return x

    place(0, 0)
    return placed


def surrogate_tree(
    tree: Any,
    labels: Sequence[str],
    class_names: Sequence[str],
    image_shape: Sequence[int] | None,
    mean_image: np.ndarray | None,
    split_order: Sequence[int],
    thresholds: Sequence[str] | None = None,
    max_depth: int = 3,
) -> Figure:
    """The chosen tree (a ``surrogate.TreeArrays``) down to ``max_depth``: each box the question
    asked (true goes left), the share of training rows reaching it and the class the network gives
    most of them, coloured by that class and shaded by its purity; and for images the pixels it
    splits on, numbered in node order, over the mean image. ``thresholds``: each node's threshold
    as text (in the feature's own units), else the tree's own. A regression tree (``tree.regression``;
    ``class_names`` is then [target name]) shows the mean predicted value per box instead, coloured
    from low (blue) to high (red) predictions."""
    from matplotlib import colormaps

    from pipeline import task

    regression = bool(getattr(tree, "regression", False))

    images = image_shape is not None and mean_image is not None
    fig, axes = subplots(
        1,
        2 if images else 1,
        figsize=(11 if images else 9, 4.8),  # the report shows it about 1000 px wide: text stays legible
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 1]} if images else None,
    )
    ax = axes[0, 0]
    placed = _tree_layout(tree, max_depth)
    total = float(tree.n_samples[0])
    palette = colormaps["tab10"]
    shades = colormaps["coolwarm"]
    if regression:
        means = np.asarray([tree.mean(node) for node in placed])
        low, high = float(means.min()), float(means.max())
    for node, (x, depth) in placed.items():
        for child in (int(tree.left[node]), int(tree.right[node])):
            if not tree.is_leaf(node) and child in placed and depth < max_depth:
                cx, cd = placed[child]
                ax.plot([x, cx], [-depth, -cd], color="#999999", lw=0.8, zorder=1)
    for node, (x, depth) in placed.items():
        share = tree.n_samples[node] / total
        if regression:
            value = tree.mean(node)
            name = f"≈ {task.fmt(value)}"
            color = shades((value - low) / (high - low) if high > low else 0.5)
            strength = 0.7
        else:
            predicted = tree.prediction(node)
            name = str(class_names[predicted]) if predicted < len(class_names) else str(predicted)
            color = palette(predicted % 10)
            strength = 0.15 + 0.6 * tree.purity(node)
        if tree.is_leaf(node):
            text = f"{name}\n{share:.0%} of rows"
        elif depth == max_depth:
            text = f"… {name}\n{share:.0%} of rows"
        else:
            limit = thresholds[node] if thresholds is not None else f"{tree.threshold[node]:.3g}"
            text = f"{labels[int(tree.feature[node])]}\n<= {limit}?\n{share:.0%} → {name}"
        fill = tuple(1 - strength * (1 - c) for c in color[:3])  # opaque: the edges pass behind it
        ax.text(
            x,
            -depth,
            text,
            ha="center",
            va="center",
            fontsize=7,
            zorder=2,
            bbox={"boxstyle": "round", "fc": fill, "ec": "#555555"},
        )
    xs = [x for x, _ in placed.values()]
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(-max_depth - 0.5, 0.5)
    ax.axis("off")
    if regression:
        title = f"surrogate tree (true goes left; ≈ mean predicted {class_names[0]}; blue low, red high)"
    else:
        title = "surrogate tree (true goes left; colour: the class, stronger = purer)"
    ax.set_title(title, fontsize=9)
    if images:
        assert image_shape is not None and mean_image is not None
        ax = axes[0, 1]
        ax.imshow(mean_image.reshape(tuple(image_shape)), cmap="gray_r", alpha=0.45)  # markers stay legible
        width = int(image_shape[1])
        for k, feature in enumerate(split_order[:12], start=1):
            row, col = divmod(int(feature), width)
            ax.scatter([col], [row], s=160, facecolors="none", edgecolors="#d62728", linewidths=1.5)
            ax.annotate(str(k), (col, row), color="#d62728", fontsize=8, ha="center", va="center")
        ax.set_title("split pixels (1 = root) on the mean test image", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def surrogate_classes(class_fidelity: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Per class the network predicted, the share of those test samples the tree agrees on."""
    fig, ax = subplots(figsize=(max(4.0, 0.5 * len(class_names) + 2), 3.5))
    values = np.nan_to_num(class_fidelity, nan=0.0)
    colors = ["#2ca02c" if v >= 0.9 else "#ff7f0e" if v >= 0.7 else "#d62728" for v in values]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), [str(c) for c in class_names], rotation=30 if len(values) > 10 else 0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("class the network predicted")
    ax.set_ylabel("tree agrees")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
