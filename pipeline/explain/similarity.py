"""How alike two sets of attributions are: arrays in, one number per sample out.

No torch, no plotting: explain's trust checks (agreement with Integrated Gradients), the
weight-randomisation sanity check (pipeline.explain.sanity) and the comparison page call these;
tests/explain/test_checks.py and tests/stages/test_explain.py check each on hand-made cases and against scipy
and scikit-image.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

SSIM_WINDOW = 7  # scikit-image's default window (win_size=7)
SSIM_K1, SSIM_K2 = 0.01, 0.03  # the constants of Wang et al. (2004), as scikit-image uses them


def rank_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (ties get their
    average rank); NaN for a row where either is constant (no ranking to compare)."""
    ra = rankdata(np.asarray(a, dtype=np.float64), axis=1)
    rb = rankdata(np.asarray(b, dtype=np.float64), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)


def unit_maps(maps: np.ndarray) -> np.ndarray:
    """|maps| scaled so each sample's largest value is 1 (an all-zero map stays 0): attribution
    maps compared by where they put weight, not by their overall scale (Adebayo et al. 2018)."""
    a = np.abs(np.asarray(maps, dtype=np.float64))
    top = a.reshape(len(a), -1).max(axis=1).reshape(-1, *([1] * (a.ndim - 1)))
    return np.divide(a, top, out=np.zeros_like(a), where=top > 0)


def window_size(shape: tuple[int, ...]) -> int:
    """scikit-image's 7-pixel window, or the largest odd size that fits a smaller image."""
    side = min(shape)
    size = min(SSIM_WINDOW, side if side % 2 else side - 1)
    if size < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, not {shape}")
    return size


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Mean structural similarity of each pair of 2-d images ``a[i]``, ``b[i]`` (shape (n, H, W)):
    scikit-image's ``structural_similarity(a[i], b[i], data_range=data_range)`` with its defaults
    (a uniform 7x7 window, sample covariances, the mean over windows that lie inside the image),
    vectorised over the samples. 1 for identical images."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"ssim takes two stacks (n, H, W) of one shape, not {x.shape} and {y.shape}")
    w = window_size(x.shape[1:])
    n_px = w * w
    cov_norm = n_px / (n_px - 1)

    def local_mean(img: np.ndarray) -> np.ndarray:
        windows = np.lib.stride_tricks.sliding_window_view(img, (w, w), axis=(1, 2))
        return windows.mean(axis=(-2, -1))

    ux, uy = local_mean(x), local_mean(y)
    vx = cov_norm * (local_mean(x * x) - ux * ux)
    vy = cov_norm * (local_mean(y * y) - uy * uy)
    vxy = cov_norm * (local_mean(x * y) - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean(axis=(1, 2))
