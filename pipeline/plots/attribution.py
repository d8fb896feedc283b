"""Figures of SHAP attributions."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def _symmetric_limit(values: np.ndarray) -> float:
    return float(np.abs(values).max()) or 1.0


def class_importance_maps(
    importance: np.ndarray, image_shape: Sequence[int], class_names: Sequence[str]
) -> Figure:
    """Mean |SHAP| per pixel for each class, as images: bright pixels drive that class's score."""
    n = len(class_names)
    cols = min(n, 5)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)
    vmax = float(importance.max()) or 1.0
    image = None
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < n:
            image = ax.imshow(importance[k].reshape(image_shape), cmap="magma", vmin=0, vmax=vmax)
            ax.set_title(f"class {class_names[k]}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="mean |SHAP|")
    return fig


def example_maps(
    images: np.ndarray, attributions: np.ndarray, image_shape: Sequence[int], titles: Sequence[str]
) -> Figure:
    """Each sample: the input image, then its SHAP map for the predicted class
    (red raises the class score, blue lowers it), overlaid on the faint digit."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 4.0), squeeze=False)
    limit = _symmetric_limit(attributions)
    shade = None
    for i in range(n):
        img = images[i].reshape(image_shape)
        axes[0, i].imshow(img, cmap="gray_r")
        axes[0, i].set_title(titles[i], fontsize=8)
        axes[1, i].imshow(img, cmap="gray_r", alpha=0.25)
        shade = axes[1, i].imshow(
            attributions[i].reshape(image_shape), cmap="bwr", vmin=-limit, vmax=limit, alpha=0.85
        )
        for ax in axes[:, i]:
            ax.set_axis_off()
    if shade is not None:
        fig.colorbar(shade, ax=axes.ravel().tolist(), shrink=0.7, label="SHAP value (predicted class)")
    return fig


def feature_importance_bars(importance: np.ndarray, feature_names: Sequence[str], top: int = 20) -> Figure:
    """Global importance: mean |SHAP| over samples and classes, largest first."""
    total = importance.mean(axis=0)  # (features,)
    order = np.argsort(total)[::-1][:top]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    ax.barh(np.arange(len(order))[::-1], total[order])
    ax.set_yticks(np.arange(len(order))[::-1], [feature_names[i] for i in order], fontsize=8)
    ax.set_xlabel("mean |SHAP| (all classes)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
