"""Figures of the network itself: its layers, activation functions and weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import FuncFormatter

from pipeline.plots import subplots

# Fill colour per kind of block in the architecture diagram.
_BLOCK_COLOURS = {
    "input": "#d9d9d9",
    "linear": "#9ecae1",
    "activation": "#fdae6b",
    "dropout": "#f0f0f0",
    "conv": "#c6dbef",
    "pool": "#e5f5e0",
    "flatten": "#f0f0f0",
    "layer": "#ffffff",
    "output": "#a1d99b",
}
# How an activation (its module's type, lower case) is written; any other keeps its lower-case name.
_ACTIVATION_NAMES = {
    "relu": "ReLU",
    "leakyrelu": "leaky ReLU",
    "elu": "ELU",
    "selu": "SELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
}


def _block_text(spec: Mapping[str, Any], image_shape: Sequence[int] | None) -> str:
    kind = spec["kind"]
    if kind == "input":
        shape = f"\n({' × '.join(str(s) for s in image_shape)} image)" if image_shape else ""
        return f"Input\n{spec['width']:,} features{shape}"
    shape = " × ".join(str(d) for d in spec.get("shape", []))
    if kind == "conv":
        k = "×".join(str(d) for d in spec.get("kernel", []))
        channels = f"{spec['in_channels']} → {spec['shape'][0]} channels"
        return f"{spec['type']} {k}\n{channels}\n{shape}\n{spec['params']:,} params"
    if kind == "pool":
        return f"{spec['type']}\n→ {shape}"
    if kind == "flatten":
        return f"Flatten\n→ {spec['width']:,}"
    if kind == "layer":
        return f"{spec['type']}\n→ {shape}\n{spec['params']:,} params"
    if kind == "linear":
        return f"Linear\n{spec['fan_in']:,} → {spec['width']:,}\n{spec['params']:,} params"
    if kind == "activation":
        name = _ACTIVATION_NAMES.get(spec["function"], spec["function"])
        if len(spec.get("shape", [])) > 1:  # after a convolution: channels x positions
            return f"{name}\n{spec['shape'][0]} channels\n{shape}"
        return f"{name}\n{spec['width']:,} units"
    if kind == "dropout":
        return f"Dropout\np = {spec['p']:g}\n(training only)"
    if spec.get("target"):  # a regression's single output, the Linear layer's value as it is
        return f"Output\n1 value: the\npredicted\n{spec['target']}"
    return f"softmax\n{spec['width']:,} class\nprobabilities"


def architecture(specs: Sequence[Mapping[str, Any]], image_shape: Sequence[int] | None = None) -> Figure:
    """Blocks left to right, one per layer; block height grows with the layer's width."""
    n = len(specs)
    fig, ax = subplots(figsize=(max(6.0, 1.35 * n), 3.6))
    widest = max(float(s["width"]) for s in specs)
    step, box_w = 1.5, 1.15
    for i, spec in enumerate(specs):
        # sqrt keeps a 784-wide input and a 10-wide output both readable.
        height = 1.3 + 1.7 * np.sqrt(float(spec["width"]) / widest)
        x = i * step
        box = FancyBboxPatch(
            (x - box_w / 2, -height / 2),
            box_w,
            height,
            boxstyle="round,pad=0.04",
            facecolor=_BLOCK_COLOURS.get(spec["kind"], "white"),
            edgecolor="#444444",
            linestyle="--" if spec["kind"] == "dropout" else "-",
            linewidth=1.0,
        )
        ax.add_patch(box)
        ax.text(x, 0, _block_text(spec, image_shape), ha="center", va="center", fontsize=7.5)
        if i:
            ax.add_patch(
                FancyArrowPatch(
                    ((i - 1) * step + box_w / 2 + 0.03, 0),
                    (x - box_w / 2 - 0.03, 0),
                    arrowstyle="-|>",
                    mutation_scale=10,
                    color="#444444",
                )
            )
    total = sum(int(s["params"]) for s in specs)
    ax.set_title(f"{total:,} trainable parameters; data flows left to right", fontsize=10)
    ax.set_xlim(-step / 2 - 0.1, (n - 1) * step + step / 2 + 0.1)
    ax.set_ylim(-1.8, 1.8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return fig


def activation_functions(
    x: np.ndarray, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], pre_activations: np.ndarray | None
) -> Figure:
    """Each activation function (solid) and its derivative (dashed), over the histogram
    of the values actually fed into it on the test set (grey)."""
    n = len(curves)
    fig, axes = subplots(1, n, figsize=(4.6 * n, 3.3), squeeze=False)
    for ax, (name, (f, df)) in zip(axes[0], curves.items(), strict=True):
        if pre_activations is not None and pre_activations.size:
            back = ax.twinx()
            inside = pre_activations[(pre_activations >= x.min()) & (pre_activations <= x.max())]
            back.hist(inside, bins=60, color="#bbbbbb", alpha=0.6)
            back.set_yticks([])
            outside = 1 - inside.size / pre_activations.size
            back.set_ylabel(f"inputs on test data ({outside:.1%} outside the plot)", fontsize=7, color="grey")
            ax.set_zorder(back.get_zorder() + 1)
            ax.patch.set_visible(False)
        ax.plot(x, f, color="C0", linewidth=2, label=f"{_ACTIVATION_NAMES.get(name, name)}(x)")
        ax.plot(x, df, color="C3", linestyle="--", linewidth=1.6, label="derivative")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xlabel("input x (the Linear layer's output)")
        ax.set_title(_ACTIVATION_NAMES.get(name, name))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def weight_distributions(layers: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """Violins of each Linear layer's weights (left) and biases (right)."""
    fig, (ax_w, ax_b) = subplots(1, 2, figsize=(9.5, 3.6))
    labels = [f"{name}\n{w.shape[1]}→{w.shape[0]}" for name, w, _ in layers]
    positions = np.arange(1, len(layers) + 1)
    for ax, index, what in ((ax_w, 1, "weights"), (ax_b, 2, "biases")):
        data = [np.asarray(layer[index], dtype=np.float64).ravel() for layer in layers]
        parts = ax.violinplot(data, positions=positions, showmedians=True, showextrema=True)
        for body in parts["bodies"]:
            body.set_alpha(0.6)
        for pos, values in zip(positions, data, strict=True):
            ax.annotate(
                f"std {values.std():.3f}",
                (pos, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(positions, labels, fontsize=8)
        ax.set_ylabel(what)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def tile(images: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """Images (n, h, w) laid out row by row in one (rows*(h+gap)-gap, cols*(w+gap)-gap) array,
    NaN between and after them (drawn blank)."""
    n, h, w = images.shape
    rows = int(np.ceil(n / cols))
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[k]
    return out


def unit_weight_images(weights: np.ndarray, image_shape: Sequence[int]) -> Figure:
    """Row k of ``weights`` (units, pixels) drawn as an image: what hidden unit k looks for.
    Red pixels excite the unit, blue ones inhibit it; one colour scale, symmetric around 0.
    Drawn as a single mosaic (one image, not one axes per unit): 64 axes took 3 s to save."""
    h, w = (int(s) for s in image_shape)
    cols = min(len(weights), 8)
    mosaic = tile(weights.reshape(len(weights), h, w), cols)
    rows = int(np.ceil(len(weights) / cols))
    fig, ax = subplots(figsize=(1.0 * cols + 1.4, 1.0 * rows + 0.4))
    limit = float(np.abs(weights).max()) or 1.0
    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    image = ax.imshow(mosaic, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xticks(
        [c * (w + 1) + (w - 1) / 2 for c in range(cols)], [f"+{c}" for c in range(cols)], fontsize=7
    )
    ax.set_yticks(
        [r * (h + 1) + (h - 1) / 2 for r in range(rows)],
        [f"unit {r * cols}" for r in range(rows)],
        fontsize=7,
    )
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(image, ax=ax, shrink=0.8, label="incoming weight")
    return fig


def unit_weight_heatmap(weights: np.ndarray, feature_names: Sequence[str]) -> Figure:
    """Tabular inputs: first-layer weights as a (units x features) heatmap with feature names."""
    n_units, n_features = weights.shape
    fig, ax = subplots(figsize=(min(16.0, 2.5 + 0.28 * n_features), min(12.0, 1.5 + 0.16 * n_units)))
    limit = float(np.abs(weights).max()) or 1.0
    image = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(n_features), list(feature_names), rotation=90, fontsize=7)
    ax.set_ylabel(f"first-layer unit (first {n_units})")
    fig.colorbar(image, ax=ax, label="incoming weight")
    fig.tight_layout()
    return fig


def weight_history(history: Mapping[str, Any], kept_epoch: int | None = None) -> Figure:
    """Per Linear or convolutional layer: the weights' 5-95% and 25-75% quantile bands and median over epochs
    (epoch 0 = the initial weights)."""
    layers = history["layers"]
    qs = list(history["quantiles"])
    epochs = np.asarray(history["epochs"])
    lo, q1, mid, q3, hi = (qs.index(q) for q in (0.05, 0.25, 0.5, 0.75, 0.95))
    n = len(layers)
    fig, axes = subplots(1, n, figsize=(4.0 * n, 3.2), squeeze=False)
    for ax, (name, entry) in zip(axes[0], layers.items(), strict=True):
        values = np.asarray(entry["weight"])  # (epochs, quantiles)
        ax.fill_between(epochs, values[:, lo], values[:, hi], alpha=0.25, color="C0", label="5–95%")
        ax.fill_between(epochs, values[:, q1], values[:, q3], alpha=0.45, color="C0", label="25–75%")
        ax.plot(epochs, values[:, mid], color="C0", linewidth=1.5, label="median")
        if kept_epoch is not None and epochs.min() <= kept_epoch <= epochs.max():
            ax.axvline(kept_epoch, color="grey", linestyle=":", label="weights kept")
        shape = entry["shape"]
        if len(shape) == 2:  # Linear: (out, in)
            ax.set_title(f"{name} ({shape[1]}→{shape[0]})", fontsize=9)
        else:  # a convolution: (out channels, in channels, *kernel)
            kernel = "×".join(str(d) for d in shape[2:])
            ax.set_title(f"{name} ({shape[1]}→{shape[0]} ch, {kernel})", fontsize=9)
        ax.set_xlabel("epoch (0 = initial)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("weight")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def gradient_norms(history: Mapping[str, Any]) -> Figure:
    """Per Linear/conv layer, input side first (dark to light): its weight-gradient norm averaged
    over each epoch's steps, on a log scale."""
    layers = history["layers"]
    epochs = np.asarray(history["epochs"])
    fig, ax = subplots(figsize=(6.8, 3.8))
    cmap = colormaps["viridis"]
    n = len(layers)
    for i, (name, entry) in enumerate(layers.items()):
        values = np.asarray(entry["grad_norm"], dtype=float)
        shape = entry["shape"]
        size = f"{shape[1]}→{shape[0]}" if len(shape) == 2 else f"{shape[1]}→{shape[0]} ch"
        ax.plot(
            epochs[: len(values)],
            np.maximum(values, 1e-12),  # a log axis cannot show 0
            color=cmap(0.85 * i / max(1, n - 1)),
            marker="o",
            markersize=3,
            linewidth=1.5,
            label=f"{name} ({size})",
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean gradient norm ‖∂loss/∂W‖")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best", title="layer (input side first)", title_fontsize=7)
    fig.tight_layout()
    return fig


def loss_line(line: Mapping[str, Any], loss_label: str = "cross-entropy loss") -> Figure:
    """Loss of the networks on the straight line between the initial (alpha 0) and the kept
    weights (alpha 1), beyond both ends too, on train and validation rows; ``loss_label`` names the
    loss trained on (for a regression, e.g. "MSE of the scaled target")."""
    alphas = np.asarray(line["alpha"])
    fig, ax = subplots(figsize=(6.4, 3.6))
    for split, colour in (("train", "C0"), ("val", "C1")):
        if split in line:
            ax.plot(alphas, line[split], color=colour, marker="o", markersize=3, label=f"{split} loss")
    for x, text in ((0.0, "initial"), (1.0, "kept")):
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 2.4, not 2.4 × 10⁰
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("α: weights (1 − α) · initial + α · kept")
    ax.set_ylabel(loss_label)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
