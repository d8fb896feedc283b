"""Stage: draw the trained network itself: structure, activation functions, weights,
activations on the test set, and its worst mistakes.

    python -m pipeline visualize
    python -m pipeline visualize visualize.n_units=32 visualize.tsne_max_samples=500

Reads the prepared data, the model and the per-epoch weight history written by
train. Writes figures to ``<paths.visualize>/figures/``, ``network.json`` (layer
table, per-layer activation statistics, worst errors) and the metrics file
(dead/saturated unit fractions per layer, parameter count, class separation of
the 2-D projections), all also logged to the run in MLflow.

Image-only figures (first-layer weights as images, error gallery of images) are
drawn when ``summary["image_shape"]`` is set; tabular data get feature-named
heatmaps and tables instead.

For a regression (pipeline.task) the network's one output is the prediction in the target's
units: the projections are coloured by the target's value (their score is the neighbour R² of
the target, ``target_knn_r2_*``, instead of the class silhouette), the errors are the largest
absolute errors (actual against predicted), the loss line names the regression loss, and the
per-class views (class activations, Grad-CAM per class) are not drawn.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import artifacts, io, layout, plots, progress, stats, task
from pipeline.config import Config
from pipeline.internals import projection
from pipeline.internals.activations import LayerActivations
from pipeline.nets import model
from pipeline.tracking import records, runs

log = logging.getLogger(__name__)


WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOLING = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _leaf_modules(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in net.named_modules() if name and not list(m.children())]


def _kind(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return "conv"
    if isinstance(layer, POOLING):
        return "pool"
    if isinstance(layer, nn.Dropout | nn.Dropout2d):
        return "dropout"
    if isinstance(layer, nn.Flatten):
        return "flatten"
    if isinstance(layer, tuple(model.ACTIVATIONS.values())):
        return "activation"
    return "layer"


def layer_specs(net: model.Shaped, target: str | None = None) -> list[dict[str, Any]]:
    """One entry per leaf module of the network in the order a forward pass runs them, with the
    shape of its output for one row (one forward pass with hooks), for the diagram and the table.
    The last entry is the output: softmax's class probabilities, or for a regression (``target``,
    the target's name) the single predicted value."""
    inner = net.net
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    handles = []
    for name, module in _leaf_modules(inner):

        def hook(mod: nn.Module, _inputs: Any, output: Any, name: str = name) -> None:
            if isinstance(output, torch.Tensor):
                seen.append((name, mod, tuple(int(d) for d in output.shape[1:])))

        handles.append(module.register_forward_hook(hook))
    was_training = inner.training
    inner.eval()
    try:
        with torch.inference_mode():
            out = net(torch.zeros(1, int(np.prod(net.input_shape))))
    finally:
        inner.train(was_training)
        for handle in handles:
            handle.remove()
    shape = list(net.input_shape)
    specs: list[dict[str, Any]] = [
        {"kind": "input", "name": "input", "width": int(np.prod(shape)), "shape": shape, "params": 0}
    ]
    for name, layer, out_shape in seen:
        entry: dict[str, Any] = {
            "name": name,
            "kind": _kind(layer),
            "type": type(layer).__name__,
            "shape": list(out_shape),
            "width": int(np.prod(out_shape)),
            "params": model.n_parameters(layer),
        }
        if isinstance(layer, nn.Linear):
            entry.update(width=layer.out_features, fan_in=layer.in_features)
        elif entry["kind"] == "conv":
            entry.update(
                kernel=list(getattr(layer, "kernel_size", [])), in_channels=getattr(layer, "in_channels", 0)
            )
        elif entry["kind"] == "dropout":
            entry.update(p=float(getattr(layer, "p", 0.0)))
        elif entry["kind"] == "activation":
            entry.update(function=type(layer).__name__.lower())
        specs.append(entry)
    if target is not None:
        specs.append(
            {
                "kind": "output",
                "name": "prediction",
                "width": int(out.shape[1]),
                "params": 0,
                "target": target,
            }
        )
    else:
        specs.append({"kind": "output", "name": "softmax", "width": int(out.shape[1]), "params": 0})
    return specs


def collect_activations(net: model.Shaped, X: np.ndarray) -> tuple[list[LayerActivations], np.ndarray]:
    """Run ``X`` through ``net`` (eval mode) with forward hooks on every activation module.

    Returns the per-layer inputs/outputs of the activations (per unit, or per channel for
    convolutional layers: see ``LayerActivations.per``) and the network's outputs: the logits
    (rows, classes), or a regression's predictions (rows, 1).
    """
    # name -> (kind, per, [pre blocks], [post blocks]), in the order the forward pass reaches them
    captured: dict[str, tuple[str, str, list[np.ndarray], list[np.ndarray]]] = {}
    handles = []
    kinds = tuple(model.ACTIVATIONS.values())
    for name, module in _leaf_modules(net.net):
        if isinstance(module, kinds):

            def hook(
                mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, name: str = name
            ) -> None:
                kind = type(mod).__name__.lower()
                pre, post = inputs[0], output
                per = "units"
                if post.dim() > 2:  # (rows, channels, *positions): one value per channel and row
                    per = "channels"
                    pre = pre.flatten(2).mean(dim=2)
                    post = post.flatten(2).amax(dim=2) if kind == "relu" else post.flatten(2).mean(dim=2)
                entry = captured.setdefault(name, (kind, per, [], []))
                entry[2].append(pre.numpy().copy())
                entry[3].append(post.numpy().copy())

            handles.append(module.register_forward_hook(hook))
    net.eval()
    rows = np.ascontiguousarray(X, dtype=np.float32)
    try:
        with torch.inference_mode():
            # In blocks: a convolution's full output for 10,000 MNIST images is 0.5 GB per layer.
            logits = np.concatenate(
                [net(torch.from_numpy(rows[i : i + 1024])).numpy() for i in range(0, len(rows), 1024)]
            )
    finally:
        for handle in handles:
            handle.remove()
    layers = [
        LayerActivations(f"hidden {i + 1}", name, kind, np.concatenate(pre), np.concatenate(post), per)
        for i, (name, (kind, per, pre, post)) in enumerate(captured.items())
    ]
    return layers, logits.astype(np.float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def activation_curve(activation: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The activation function and its derivative at ``x``, by the module the model uses and autograd."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = model.ACTIVATIONS[activation]()(t)
    (grad,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), grad.numpy()


def layer_stats(layers: list[LayerActivations], margin: float, share: float) -> list[dict[str, Any]]:
    """Per hidden layer: width, activation, dead or saturated fraction and the activations' spread."""
    rows = []
    for layer in layers:
        statistic = "dead" if layer.activation == "relu" else "saturated"
        rows.append(
            {
                "label": layer.label,
                "name": layer.name,
                "activation": layer.activation,
                "units": int(layer.post.shape[1]),
                "statistic": statistic,
                "fraction": stats.inactive_fraction(layer.post, layer.activation, margin, share),
                "mean": float(layer.post.mean()),
                "std": float(layer.post.std()),
            }
        )
    return rows


def projection_sample(
    arrays: dict[str, np.ndarray], summary: dict[str, Any], cfg: Config
) -> tuple[np.ndarray, np.ndarray]:
    """The test rows the 2-D projections show (seeded, at most visualize.tsne_max_samples; the same
    rows in all four panels, so the point clouds can be compared) and their input features."""
    pick = stats.subsample(len(arrays["y_test"]), cfg.visualize.tsne_max_samples, cfg.seed)
    # Images: raw pixels (one unit for all columns; standardizing blows up near-constant
    # border pixels and a few rows then dominate the PCA). Tabular: the standardized
    # features, else the column with the largest unit would dominate.
    return pick, (arrays["X_test_raw"] if summary["image_shape"] else arrays["X_test"])[pick]


def analyse(
    net: model.Shaped, arrays: dict[str, np.ndarray], summary: dict[str, Any], cfg: Config
) -> dict[str, Any]:
    """Core, all but the 2-D projections: activations, their statistics, worst errors, and the
    rows to project (``projection_jobs``: (method, source) -> rows; ``projection.panels`` runs them).

    Classification: ``probs`` (rows, classes), ``class_means``, ``errors`` the misclassified rows
    (lowest probability of the true class first) and ``n_misclassified``. Regression:
    ``predictions`` (rows,) in the target's units and ``errors`` the rows of the largest
    |prediction - target| first; no per-class means."""
    vcfg = cfg.visualize
    X, y = arrays["X_test"], arrays["y_test"]
    layers, outputs = collect_activations(net, X)
    rows = layer_stats(layers, vcfg.saturation_margin, vcfg.saturation_share)

    pick, inputs = projection_sample(arrays, summary, cfg)
    last = layers[-1].post[pick] if layers else X[pick]
    jobs = {
        (m, source): data for m in ("pca", "tsne") for source, data in (("inputs", inputs), ("hidden", last))
    }
    common = {"layers": layers, "stats": rows, "projection_jobs": jobs, "projection_rows": pick}
    if task.is_regression(summary):
        predictions = outputs[:, 0]  # (rows,): the network's one output, in the target's units
        return {
            **common,
            "predictions": predictions,
            "errors": stats.largest_errors(predictions, y, vcfg.n_errors),
        }
    probs = softmax(outputs)
    n_classes = summary["n_classes"]
    return {
        **common,
        "class_means": [stats.class_means(layer.post, y, n_classes) for layer in layers],
        "probs": probs,
        "errors": stats.worst_errors(probs, y, vcfg.n_errors),
        "n_misclassified": int((probs.argmax(axis=1) != y).sum()),
    }


def size_notes(
    vcfg: Any, n_test: int, n_units: int, n_misclassified: int, errors: str = "misclassified test rows"
) -> list[str]:
    """One sentence per size setting that is an upper bound the data cut (for the log): t-SNE's
    rows, the first layer's units drawn, the worst errors shown (``n_misclassified`` of the
    ``errors``: for a regression, every test row)."""
    notes = []
    for key, wanted, available, what in (
        ("tsne_max_samples", vcfg.tsne_max_samples, n_test, "rows of the test split: projected"),
        ("n_units", vcfg.n_units, n_units, "units of the first layer: drew"),
        ("n_errors", vcfg.n_errors, n_misclassified, f"{errors}: showed"),
    ):
        if wanted > available:
            notes.append(f"visualize.{key} = {wanted} is more than the {available} {what} all {available}")
    return notes


def metrics_of(net: model.Shaped, result: dict[str, Any], y: np.ndarray | None = None) -> dict[str, float]:
    """Flat metrics for DVC and MLflow: one dead/saturated fraction per hidden layer, the
    projections' scores (class silhouette, or a regression's ``target_knn_r2_*``), and the count of
    misclassified test rows, or for a regression the largest absolute error (``max_abs_error``, in
    the target's units; ``y``: the test targets)."""
    metrics: dict[str, float] = {"n_parameters": float(model.n_parameters(net))}
    for i, row in enumerate(result["stats"], start=1):
        metrics[f"layer{i}_{row['statistic']}_fraction"] = row["fraction"]
    metrics.update(result["separation"])
    if "predictions" in result:
        assert y is not None, "a regression's metrics need the test targets"
        errors = np.abs(result["predictions"] - y)
        metrics["max_abs_error"] = float(errors.max()) if len(errors) else float("nan")
    else:
        metrics["n_misclassified"] = float(result["n_misclassified"])
    metrics["tsne_samples"] = float(len(result["projection_rows"]))
    return metrics


def weighted_layers(net: model.Shaped) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, weight (out, in...), bias (out,)) of each Linear and convolutional layer, input side
    first (a convolution's weight flattened per output channel)."""
    found = []
    for name, layer in _leaf_modules(net.net):
        if isinstance(layer, WEIGHTED):
            weight = layer.weight.detach().numpy()
            bias = layer.bias.detach().numpy() if layer.bias is not None else np.zeros(weight.shape[0])
            found.append((name, weight.reshape(weight.shape[0], -1), bias))
    return found


def conv2d_layers(net: model.Shaped) -> list[tuple[str, nn.Conv2d]]:
    """The network's 2-D convolutions, input side first."""
    return [(name, m) for name, m in _leaf_modules(net.net) if isinstance(m, nn.Conv2d)]


def feature_maps(net: model.Shaped, X: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Per activation module that follows a convolution: its output maps (rows, channels, h, w)
    for the rows ``X`` (flat, as the stages hold them)."""
    found: dict[str, np.ndarray] = {}
    handles = []
    for name, module in _leaf_modules(net.net):
        if isinstance(module, tuple(model.ACTIVATIONS.values())):

            def hook(_mod: nn.Module, _inputs: Any, output: torch.Tensor, name: str = name) -> None:
                if output.dim() == 4:
                    found[name] = output.numpy().copy()

            handles.append(module.register_forward_hook(hook))
    net.eval()
    try:
        with torch.inference_mode():
            net(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()
    return list(found.items())


def grad_cam(net: model.Shaped, X: np.ndarray, targets: np.ndarray, layer: nn.Module) -> np.ndarray:
    """Captum's Grad-CAM of ``layer`` for class ``targets[i]`` of each row of ``X``, upsampled to
    the image (rows, height, width); ReLU'd, so 0 where the layer's features lowered the score."""
    from captum.attr import LayerAttribution, LayerGradCam

    net.eval()
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).reshape(len(X), *net.input_shape)
    x = x.to(next(net.parameters()).device)  # the model's device, whichever it is
    cams = LayerGradCam(net.net, layer).attribute(
        x, target=torch.as_tensor(targets, dtype=torch.long).tolist()
    )
    upsampled = LayerAttribution.interpolate(cams, tuple(net.input_shape[1:]), interpolate_mode="bilinear")
    return np.asarray(upsampled[:, 0].detach().cpu().numpy(), dtype=np.float64)


def conv_jobs(
    net: model.Shaped, arrays: dict[str, np.ndarray], summary: dict[str, Any], result: dict[str, Any]
) -> dict[str, tuple[Any, ...]]:
    """The figures made for convolutional networks on images (none for other networks)."""
    convs = conv2d_layers(net)
    shape = summary["image_shape"]
    if not convs or not shape:
        return {}
    classes = summary["class_names"]
    X, y, raw = arrays["X_test"], arrays["y_test"], arrays["X_test_raw"]
    jobs: dict[str, tuple[Any, ...]] = {
        "conv_filters": (convs[0][1].weight.detach().cpu().numpy(), convs[0][0])
    }
    rows = np.arange(min(4, len(y)))
    if task.is_regression(summary):
        return {**jobs, **regression_conv_jobs(net, arrays, summary, result, rows, convs[-1])}
    pred = result["probs"].argmax(axis=1)
    titles = [f"true {classes[y[i]]} / pred {classes[pred[i]]}" for i in rows]
    jobs["conv_feature_maps"] = (raw[rows].reshape(-1, *shape), feature_maps(net, X[rows]), titles)
    name, last = convs[-1]
    # Per class: up to 16 of its correctly classified test images, their Grad-CAM maps for it,
    # each scaled to its own peak, averaged; beside the images' mean.
    means, maps, shown = [], [], []
    for k in range(len(classes)):
        picked = np.flatnonzero((y == k) & (pred == k))[:16]
        if not len(picked):
            continue
        cams = grad_cam(net, X[picked], np.full(len(picked), k), last)
        peaks = cams.reshape(len(cams), -1).max(axis=1)
        maps.append((cams / np.where(peaks > 0, peaks, 1)[:, None, None]).mean(axis=0))
        means.append(raw[picked].reshape(-1, *shape).mean(axis=0))
        shown.append(classes[k])
    if maps:
        jobs["grad_cam_classes"] = (np.stack(means), np.stack(maps), shown, name)
    errors = result["errors"]
    if len(errors):
        cams = grad_cam(net, X[errors], pred[errors], last)
        titles = [f"true {classes[y[i]]} / pred {classes[pred[i]]}" for i in errors]
        jobs["grad_cam_errors"] = (raw[errors].reshape(-1, *shape), cams, titles, name)
    return jobs


def regression_conv_jobs(
    net: model.Shaped,
    arrays: dict[str, np.ndarray],
    summary: dict[str, Any],
    result: dict[str, Any],
    rows: np.ndarray,
    last: tuple[str, nn.Module],
) -> dict[str, tuple[Any, ...]]:
    """A regression's feature maps (titled actual / predicted) and the Grad-CAM maps of its one
    output for the largest errors; no per-class map (there are no classes)."""
    shape, (name, layer) = summary["image_shape"], last
    X, y, raw = arrays["X_test"], arrays["y_test"], arrays["X_test_raw"]
    pred = result["predictions"]
    titles = [f"actual {task.fmt(y[i])} / pred {task.fmt(pred[i])}" for i in rows]
    jobs: dict[str, tuple[Any, ...]] = {
        "conv_feature_maps": (raw[rows].reshape(-1, *shape), feature_maps(net, X[rows]), titles)
    }
    errors = result["errors"]
    if len(errors):
        cams = grad_cam(net, X[errors], np.zeros(len(errors), dtype=np.int64), layer)
        titles = [f"actual {task.fmt(y[i])} / pred {task.fmt(pred[i])}" for i in errors]
        jobs["grad_cam_errors"] = (raw[errors].reshape(-1, *shape), cams, titles, name)
    return jobs


def loss_label(cfg: Config, summary: dict[str, Any]) -> str:
    """The loss the network was trained on, as the loss line's axis names it: cross-entropy, or
    for a regression ``loss`` (default MSE) of the target scaled to mean 0 and sd 1 on the train split."""
    if not task.is_regression(summary):
        return "cross-entropy loss"
    target = cfg.loss._target_
    name = str(target).rpartition(".")[2] if target else "MSELoss"
    named = {"MSELoss": "MSE", "L1Loss": "mean absolute error", "HuberLoss": "Huber loss"}.get(name, name)
    return f"{named} of the scaled target"


def first_units(net: model.Shaped, n_features: int) -> np.ndarray | None:
    """The weights (units, features) of the first layer when it is a Linear layer over every
    input feature (an MLP's), else None (a convolution weighs a neighbourhood, not the image)."""
    for _, layer in _leaf_modules(net.net):
        if isinstance(layer, WEIGHTED):
            if isinstance(layer, nn.Linear) and layer.in_features == n_features:
                return np.asarray(layer.weight.detach().numpy())
            return None
    return None


def figure_jobs(
    cfg: Config,
    net: model.Shaped,
    arrays: dict[str, np.ndarray],
    summary: dict[str, Any],
    history: dict[str, Any],
    best_epoch: int,
    result: dict[str, Any],
    dynamics: dict[str, Any] | None = None,
) -> dict[str, tuple[Any, ...]]:
    """Figure id (pipeline.plots.figures) -> the arguments of its drawing function, in report order;
    all but the 2-D projections, which run adds once projected. ``dynamics``: the train stage's
    gradient norms and loss line ({"gradient_norms": ..., "loss_line": ...}), where it wrote them."""
    dynamics = dynamics or {}
    classes = summary["class_names"]
    features = summary["feature_names"]
    shape = summary["image_shape"]
    regression = task.is_regression(summary)
    y = arrays["y_test"]
    layers: list[LayerActivations] = result["layers"]
    weighted = weighted_layers(net)
    first = first_units(net, len(features))

    target = task.target_name(summary) if regression else None
    jobs: dict[str, tuple[Any, ...]] = {"architecture": (layer_specs(net, target), shape)}
    activations_used = sorted({layer.activation for layer in layers})
    if activations_used:
        x = np.linspace(-5, 5, 401)
        curves = {name: activation_curve(name, x) for name in activations_used}
        pre = np.concatenate([layer.pre.ravel() for layer in layers])
        jobs["activation_functions"] = (x, curves, pre)
    if weighted:
        jobs["weight_distributions"] = (weighted,)
    if first is not None:  # a first layer that weighs every input feature: its units as images
        n_units = min(cfg.visualize.n_units, first.shape[0])
        if shape:
            jobs["first_layer_images"] = (first[:n_units], shape)
        else:
            jobs["first_layer_features"] = (first[:n_units], features)
    # History epoch k holds the weights after k epochs; the kept weights are after best_epoch + 1.
    jobs["weight_history"] = (history, best_epoch + 1)
    if dynamics.get("gradient_norms", {}).get("epochs"):
        jobs["gradient_norms"] = (dynamics["gradient_norms"],)
    if dynamics.get("loss_line"):
        jobs["loss_line"] = (dynamics["loss_line"], loss_label(cfg, summary))
    if layers:
        vcfg = cfg.visualize
        jobs["activation_distributions"] = (
            layers,
            result["stats"],
            vcfg.saturation_margin,
            vcfg.saturation_share,
        )
        if not regression:  # per class: a regression has none
            ordered = [
                (row["label"], m[:, stats.unit_order(m)])
                for row, m in zip(result["stats"], result["class_means"], strict=True)
            ]
            jobs["class_activations"] = (ordered, classes)
    jobs.update(conv_jobs(net, arrays, summary, result))
    errors = result["errors"]
    if len(errors):
        raw = arrays["X_test_raw"][errors]
        if regression:  # the largest absolute errors: actual against predicted, in the target's units
            outputs = result["predictions"][errors]
            jobs["error_gallery"] = (
                raw,
                arrays["X_test"][errors],
                outputs,
                y[errors],
                [target],
                features,
                shape,
                task.REGRESSION,
            )
        else:
            probs = result["probs"][errors]
            jobs["error_gallery"] = (
                raw,
                arrays["X_test"][errors],
                probs,
                y[errors],
                classes,
                features,
                shape,
            )
    return jobs


def network_record(
    net: model.Shaped, result: dict[str, Any], summary: dict[str, Any], y: np.ndarray
) -> dict[str, Any]:
    """The JSON the report reads: layer table, per-layer statistics, worst errors (for a
    regression: the largest absolute errors, actual and predicted in the target's units, and no
    ``n_misclassified``)."""
    if task.is_regression(summary):
        return regression_record(net, result, summary, y)
    classes = summary["class_names"]
    probs = result["probs"]
    errors = [
        {
            "row": int(i),
            "true": classes[int(y[i])],
            "predicted": classes[int(probs[i].argmax())],
            "p_true": float(probs[i, y[i]]),
            "p_predicted": float(probs[i].max()),
        }
        for i in result["errors"]
    ]
    return {
        "n_parameters": model.n_parameters(net),
        "layers": layer_specs(net),
        "activation_stats": result["stats"],
        "errors": errors,
        "n_misclassified": result["n_misclassified"],
        "projection_samples": int(len(result["projection_rows"])),
        "separation": result["separation"],
    }


def regression_record(
    net: model.Shaped, result: dict[str, Any], summary: dict[str, Any], y: np.ndarray
) -> dict[str, Any]:
    predicted = result["predictions"]
    errors = [
        {
            "row": int(i),
            "actual": float(y[i]),
            "predicted": float(predicted[i]),
            "error": float(y[i] - predicted[i]),  # the residual, as evaluate's: > 0 predicted too low
            "abs_error": float(abs(predicted[i] - y[i])),
        }
        for i in result["errors"]
    ]
    return {
        "task": task.REGRESSION,
        "target_name": task.target_name(summary),
        "n_parameters": model.n_parameters(net),
        "layers": layer_specs(net, task.target_name(summary)),
        "activation_stats": result["stats"],
        "errors": errors,
        "projection_samples": int(len(result["projection_rows"])),
        "separation": result["separation"],
    }


def run(cfg: Config) -> dict[str, float]:
    progress.mode()  # a bad GLASSNET_PROGRESS stops the stage now, not minutes in
    started = time.perf_counter()
    vcfg = cfg.visualize
    settings: dict[str, Any] = {
        "seed": cfg.seed,
        "perplexity": vcfg.tsne_perplexity,
        "pca_dims": vcfg.pca_before_tsne,
    }
    arrays, summary = artifacts.load_data(cfg)
    regression = task.is_regression(summary)
    settings["regression"] = regression  # colour and score the projections by the target's value
    net = artifacts.load_model(cfg)
    run_info = runs.load_run(layout.run_file(cfg))
    history = io.read_json(layout.weight_history_file(cfg), "train")
    dynamics = {
        name: io.read_json(path, "train")
        for name, path in (
            ("gradient_norms", layout.gradient_norms_file(cfg)),
            ("loss_line", layout.loss_line_file(cfg)),
        )
        if path.exists()
    }
    best_epoch = int(io.read_json(cfg.paths.train_metrics, "train")["best_epoch"])

    result = analyse(net, arrays, summary, cfg)
    labels = arrays["y_test"][result["projection_rows"]]
    result.update(projection.panels(result["projection_jobs"], labels, **settings))
    folder = layout.figure_dir(cfg.paths.visualize)
    plots.clear(folder)
    jobs = figure_jobs(cfg, net, arrays, summary, history, best_epoch, result, dynamics)
    projected: tuple[Any, ...] = (result["projections"], labels, summary["class_names"], result["separation"])
    if regression:
        projected = (*projected, task.REGRESSION)
    jobs["projections"] = projected
    paths = plots.render_all(jobs, folder, cfg.report.dpi)

    first = first_units(net, len(summary["feature_names"]))
    n_first = first.shape[0] if first is not None else cfg.visualize.n_units
    n_test = len(arrays["y_test"])
    wrong, errors_what = (
        (n_test, "test rows") if regression else (result["n_misclassified"], "misclassified test rows")
    )
    for note in size_notes(cfg.visualize, n_test, n_first, wrong, errors_what):
        log.info("%s.", note)
    metrics = metrics_of(net, result, arrays["y_test"])
    if "gradient_norms" in dynamics:
        metrics["gradient_depth_ratio"] = stats.gradient_depth_ratio(dynamics["gradient_norms"])
    io.write_json(layout.network_file(cfg), network_record(net, result, summary, arrays["y_test"]))
    # NaN (e.g. a silhouette with one class) is not valid JSON for DVC: write null instead.
    io.write_json(cfg.paths.visualize_metrics, {k: v if np.isfinite(v) else None for k, v in metrics.items()})
    prefixed = {f"viz_{k}": v for k, v in metrics.items()}
    records.write(layout.mlflow_record(cfg.paths.visualize), run_info, prefixed, paths, "visualize")
    log.info(
        "Visualized %s: %s; %d figures in %.1f s -> %s",
        summary["dataset"],
        ", ".join(f"{r['label']} {r['fraction']:.1%} {r['statistic']}" for r in result["stats"]),
        len(paths),
        time.perf_counter() - started,
        cfg.paths.visualize,
    )
    return metrics


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
