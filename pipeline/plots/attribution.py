"""Figures of SHAP attributions.

Each function draws classification by default; given ``target`` (the regression target's name, as
``pipeline.task.target_name`` gives it) it draws the single output instead and speaks of the
prediction in the target's units rather than of classes and logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from pipeline.plots import subplots


def _symmetric_limit(values: np.ndarray) -> float:
    return float(np.abs(values).max()) or 1.0


def class_importance_maps(
    importance: np.ndarray,
    image_shape: Sequence[int],
    class_names: Sequence[str],
    target: str | None = None,
) -> Figure:
    """Mean |SHAP| per pixel for each class, as images: bright pixels drive that class's score
    (regression, ``target`` given: one map, of the prediction)."""
    n = len(class_names)
    cols = min(n, 5)
    rows = int(np.ceil(n / cols))
    fig, axes = subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)
    vmax = float(importance.max()) or 1.0
    image = None
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < n:
            image = ax.imshow(importance[k].reshape(image_shape), cmap="magma", vmin=0, vmax=vmax)
            ax.set_title(f"predicted {target}" if target else f"class {class_names[k]}", fontsize=9)
    if image is not None:
        label = f"mean |SHAP| ({target} units)" if target else "mean |SHAP|"
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    return fig


def example_maps(
    images: np.ndarray, attributions: np.ndarray, image_shape: Sequence[int], titles: Sequence[str]
) -> Figure:
    """Each sample: the input image, then its SHAP map for the predicted class
    (red raises the class score, blue lowers it), overlaid on the faint digit."""
    n = len(images)
    fig, axes = subplots(2, n, figsize=(1.8 * n, 4.0), squeeze=False)
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


def feature_importance_bars(
    importance: np.ndarray,
    feature_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    target: str | None = None,
    top: int = 20,
) -> Figure:
    """Global importance: mean |SHAP| per feature, largest first, as bars stacked by class
    (each segment is that class's share), so the bar's length is the sum over classes; for
    regression (``target`` given) one bar per feature, in the target's units."""
    n_classes = importance.shape[0]
    total = importance.sum(axis=0)  # (features,)
    order = np.argsort(total)[::-1][:top]
    y = np.arange(len(order))[::-1]
    fig, ax = subplots(figsize=(6.5, 0.3 * len(order) + 1.4))
    colors = colormaps["tab10" if n_classes <= 10 else "tab20"]
    left = np.zeros(len(order))
    names = class_names if class_names is not None else [str(k) for k in range(n_classes)]
    for k in range(n_classes):
        ax.barh(y, importance[k, order], left=left, color=colors(k % colors.N), label=f"class {names[k]}")
        left += importance[k, order]
    ax.set_yticks(y, [feature_names[i] for i in order], fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    if target:
        ax.set_xlabel(f"mean |SHAP| (effect on the predicted {target}, in its units)")
    else:
        ax.set_xlabel("mean |SHAP| (sum over classes)")
    if n_classes <= 20 and not target:
        ax.legend(fontsize=7, loc="lower right", ncol=2 if n_classes > 5 else 1)
    fig.tight_layout()
    return fig


def beeswarm(
    values: np.ndarray,
    data: np.ndarray,
    feature_names: Sequence[str],
    class_names: Sequence[str],
    target: str | None = None,
    *,
    max_classes: int = 4,
    max_display: int = 12,
) -> Figure:
    """shap's beeswarm, one panel per class (the first ``max_classes``): each dot is a sample, its
    position that feature's SHAP value for the class, its colour the feature's value. For
    regression (``target`` given) one panel: the SHAP values of the prediction, in target units."""
    import shap

    n_panels = min(values.shape[2], max_classes)
    n_rows = min(values.shape[1], max_display)
    fig, axes = subplots(1, n_panels, figsize=(5.5 * n_panels, 0.42 * n_rows + 1.6), squeeze=False)
    for k, ax in enumerate(axes.flat):
        explanation = shap.Explanation(values=values[:, :, k], data=data, feature_names=list(feature_names))
        # shap draws on the axes it is given; plot_size=None keeps our figure's size.
        shap.plots.beeswarm(
            explanation,
            max_display=max_display,
            ax=ax,
            show=False,
            plot_size=None,
            color_bar=k == n_panels - 1,
        )
        if target:
            ax.set_title(f"predicted {target}", fontsize=10)
            ax.set_xlabel(f"SHAP value (effect on the predicted {target}, in its units)", fontsize=9)
        else:
            ax.set_title(f"class {class_names[k]}", fontsize=10)
            ax.set_xlabel("SHAP value (effect on the logit)", fontsize=9)
    fig.tight_layout()
    return fig


def waterfalls(
    attributions: np.ndarray,
    base: np.ndarray,
    data: np.ndarray,
    feature_names: Sequence[str],
    titles: Sequence[str],
    target: str | None = None,
    *,
    max_display: int = 8,
) -> Figure:
    """One waterfall per sample: from the base value (the average logit), each of the
    ``max_display`` - 1 largest contributions moves the score up (red) or down (blue), the rest
    lumped together, ending at the model's logit f(x) for the predicted class. For regression
    (``target`` given): from the average prediction to this sample's prediction, in target units."""
    from pipeline import task

    n = len(attributions)
    cols = min(n, 2)
    rows = int(np.ceil(n / cols))
    shown = min(max_display, attributions.shape[1])
    fig, axes = subplots(rows, cols, figsize=(6.2 * cols, (0.38 * shown + 1.3) * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        a = attributions[i]
        order = np.argsort(-np.abs(a))
        top = order[: shown - 1] if attributions.shape[1] > shown else order
        rest = a.sum() - a[top].sum()
        steps = list(a[top]) + ([rest] if attributions.shape[1] > shown else [])
        labels = [f"{feature_names[j]} = {data[i, j]:.3g}" for j in top]
        if attributions.shape[1] > shown:
            labels.append(f"{attributions.shape[1] - len(top)} other features")
        start = base[i] + np.concatenate([[0.0], np.cumsum(steps)[:-1]])
        y = np.arange(len(steps))[::-1]
        colors = ["#d62728" if v >= 0 else "#1f77b4" for v in steps]
        ax.barh(y, steps, left=start, color=colors, height=0.7)
        for yy, left, width in zip(y, start, steps, strict=True):
            ax.text(
                left + width,
                yy,
                f" {width:+.2f}",
                va="center",
                ha="left" if width >= 0 else "right",
                fontsize=7,
            )
        ends = np.concatenate([start, start + np.asarray(steps)])
        span = float(ends.max() - ends.min()) or 1.0
        ax.set_xlim(ends.min() - 0.22 * span, ends.max() + 0.22 * span)  # room for the value labels
        ax.axvline(base[i], color="#777777", lw=0.8, ls="--")
        ax.axvline(base[i] + sum(steps), color="#222222", lw=0.8)
        ax.set_yticks(y, labels, fontsize=7)
        if target:
            end = base[i] + sum(steps)
            ax.set_title(f"{titles[i]}\nbase {task.fmt(base[i])} -> f(x) {task.fmt(end)}", fontsize=8)
            ax.set_xlabel(f"predicted {target}", fontsize=8)
        else:
            ax.set_title(f"{titles[i]}\nbase {base[i]:.2f} -> f(x) {base[i] + sum(steps):.2f}", fontsize=8)
            ax.set_xlabel("logit of the predicted class", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def faithfulness_curves(
    fractions: np.ndarray,
    guided: np.ndarray,
    random: np.ndarray,
    random_std: np.ndarray,
    target: str | None = None,
) -> Figure:
    """Accuracy as features are removed most-important-first (by |SHAP|) and in random order;
    the shaded area between the curves is the faithfulness area. For regression (``target``
    given) the curves are the RMSE of the prediction, in target units, which grows instead."""
    fig, ax = subplots(figsize=(6, 4))
    ax.fill_between(fractions, guided, random, color="#9467bd", alpha=0.18, label="area between")
    ax.fill_between(fractions, random - random_std, random + random_std, color="#7f7f7f", alpha=0.15)
    ax.plot(fractions, random, "o-", color="#7f7f7f", ms=3, label="random order (mean ± sd)")
    ax.plot(fractions, guided, "o-", color="#d62728", ms=3, label="most important first (SHAP)")
    ax.set_xlabel("fraction of features replaced by the background mean")
    ax.set_xlim(0, 1)
    if target:
        ax.set_ylabel(f"RMSE of the predicted {target}")
        top = float(np.nanmax(np.concatenate([guided, random + random_std]))) if len(guided) else 1.0
        ax.set_ylim(0, 1.05 * top or 1.0)
    else:
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if target else "best")
    fig.tight_layout()
    return fig


def rank_agreement_hist(rho: np.ndarray, target: str | None = None) -> Figure:
    """Histogram of per-sample Spearman correlations between SHAP and Integrated Gradients."""
    finite = rho[np.isfinite(rho)]
    fig, ax = subplots(figsize=(6, 3.6))
    ax.hist(finite, bins=np.linspace(-1, 1, 41).tolist(), color="#2ca02c", alpha=0.8)
    if len(finite):
        ax.axvline(float(np.median(finite)), color="#222222", lw=1.2, label=f"median {np.median(finite):.2f}")
        ax.axvline(float(finite.mean()), color="#222222", lw=1.2, ls="--", label=f"mean {finite.mean():.2f}")
        ax.legend(fontsize=8)
    ax.set_xlim(-1, 1)
    of = f"the predicted {target}" if target else "predicted class"
    ax.set_xlabel(f"Spearman rank correlation, SHAP vs Integrated Gradients ({of})")
    ax.set_ylabel("test samples")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
