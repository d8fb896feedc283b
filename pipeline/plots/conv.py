"""Figures made for convolutional networks: the first layer's filters, the feature maps of each
conv block, and Grad-CAM heatmaps (where the last conv layer looked) upsampled onto the image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.plots import subplots


def filters(weights: np.ndarray, name: str) -> Figure:
    """The first conv layer's filters (out channels, in channels, k, k) as small images, averaged
    over the input channels; blue negative, red positive, one colour scale for all."""
    kernels = weights.mean(axis=1)  # (out, k, k)
    n = len(kernels)
    cols = min(8, n)
    rows = int(np.ceil(n / cols))
    fig, axes = subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.5), squeeze=False)
    limit = float(np.abs(kernels).max()) or 1.0
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < n:
            ax.imshow(kernels[i], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(f"{i}", fontsize=7)
    fig.suptitle(f"{name}: {n} filters of {kernels.shape[1]}×{kernels.shape[2]}", fontsize=9)
    fig.tight_layout()
    return fig


def feature_maps(
    images: np.ndarray, blocks: Sequence[tuple[str, np.ndarray]], titles: Sequence[str], per_block: int = 6
) -> Figure:
    """Per test image (a row): the image, then the first ``per_block`` channels each conv block's
    activation produced for it (brighter: stronger)."""
    n = len(images)
    cols = 1 + per_block * len(blocks)
    fig, axes = subplots(n, cols, figsize=(0.95 * cols, 1.05 * n + 0.6), squeeze=False)
    for r in range(n):
        axes[r, 0].imshow(images[r], cmap="gray_r", interpolation="nearest")
        axes[r, 0].set_ylabel(titles[r], fontsize=7)
        for b, (name, maps) in enumerate(blocks):
            for c in range(per_block):
                ax = axes[r, 1 + b * per_block + c]
                if c < maps.shape[1]:
                    ax.imshow(maps[r, c], cmap="magma", interpolation="nearest")
                if r == 0:
                    ax.set_title(f"{name}\nch {c}" if c == 0 else f"ch {c}", fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].set_title("input", fontsize=7)
    fig.tight_layout()
    return fig


def grad_cam(images: np.ndarray, cams: np.ndarray, titles: Sequence[str], layer: str) -> Figure:
    """Each image in grey with its Grad-CAM heatmap over it (scaled to its own maximum): the
    regions whose features in ``layer`` raised the named class's score."""
    n = len(images)
    cols = min(6, n)
    rows = int(np.ceil(n / cols))
    fig, axes = subplots(rows, cols, figsize=(1.8 * cols, 2.0 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i], cmap="gray_r", interpolation="nearest")
            peak = float(cams[i].max()) or 1.0
            ax.imshow(cams[i] / peak, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(f"Grad-CAM of {layer}", fontsize=9)
    fig.tight_layout()
    return fig


def grad_cam_classes(images: np.ndarray, cams: np.ndarray, classes: Sequence[str], layer: str) -> Figure:
    """Per class: the mean of its correctly classified test images, under the mean Grad-CAM map
    for that class."""
    return grad_cam(images, cams, [f"class {c}" for c in classes], layer)


def grad_cam_errors(images: np.ndarray, cams: np.ndarray, titles: Sequence[str], layer: str) -> Figure:
    """The worst mistakes, each under the Grad-CAM map of the class the network predicted (for a
    regression: the largest errors, under the map of its single output, titled actual / predicted)."""
    return grad_cam(images, cams, titles, layer)
