"""Stage: draw the trained network itself: structure, activation functions, weights,
activations on the test set, and its worst mistakes.

    python -m pipeline.visualize
    python -m pipeline.visualize visualize.n_units=32 visualize.tsne_max_samples=500

Reads the prepared data, the model and the per-epoch weight history written by
train. Writes figures to ``<paths.visualize>/figures/``, ``network.json`` (layer
table, per-layer activation statistics, worst errors) and the metrics file
(dead/saturated unit fractions per layer, parameter count, class separation of
the 2-D projections), all also logged to the run in MLflow.

Image-only figures (first-layer weights as images, error gallery of images) are
drawn when ``summary["image_shape"]`` is set; tabular data get feature-named
heatmaps and tables instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import io, layout, prepare, stats, tracking
from pipeline.config import Config

# torch is imported where used: this module is also imported by the helper process that
# projects (see run), which needs none of it and would pay ~1 s to start.
if TYPE_CHECKING:
    import torch

    from pipeline import model

log = logging.getLogger(__name__)


@dataclass
class LayerActivations:
    """What one activation module saw and produced on the test rows."""

    label: str  # "hidden 1", ...
    name: str  # module name in the MLP ("net.1")
    activation: str  # "relu" | "tanh" | "sigmoid"
    pre: np.ndarray  # (rows, units): the Linear layer's output, the activation's input
    post: np.ndarray  # (rows, units): the activation's output


def layer_specs(net: model.MLP) -> list[dict[str, Any]]:
    """One entry per block of the network, input to output, for the diagram and the table."""
    from torch import nn

    from pipeline import model

    arch = net.arch
    specs: list[dict[str, Any]] = [
        {"kind": "input", "name": "input", "width": arch["in_features"], "params": 0}
    ]
    width = arch["in_features"]
    for name, layer in net.net.named_children():
        entry: dict[str, Any] = {"name": f"net.{name}", "params": model.n_parameters(layer)}
        if isinstance(layer, nn.Linear):
            entry.update(kind="linear", width=layer.out_features, fan_in=layer.in_features)
            width = layer.out_features
        elif isinstance(layer, nn.Dropout):
            entry.update(kind="dropout", width=width, p=float(layer.p))
        else:
            entry.update(kind="activation", width=width, function=type(layer).__name__.lower())
        specs.append(entry)
    specs.append({"kind": "output", "name": "softmax", "width": arch["n_classes"], "params": 0})
    return specs


def collect_activations(net: model.MLP, X: np.ndarray) -> tuple[list[LayerActivations], np.ndarray]:
    """Run ``X`` through ``net`` (eval mode) with forward hooks on every activation module.

    Returns the per-layer inputs/outputs of the activations and the logits (rows, classes).
    """
    import torch
    from torch import nn

    from pipeline import model

    captured: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    handles = []
    kinds = tuple(model.ACTIVATIONS.values())
    for name, module in net.net.named_children():
        if isinstance(module, kinds):

            def hook(
                mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, name: str = name
            ) -> None:
                kind = type(mod).__name__.lower()
                captured.append((f"net.{name}", kind, inputs[0].numpy().copy(), output.numpy().copy()))

            handles.append(module.register_forward_hook(hook))
    net.eval()
    try:
        with torch.inference_mode():
            logits = net(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
    finally:
        for handle in handles:
            handle.remove()
    layers = [
        LayerActivations(f"hidden {i + 1}", name, kind, pre, post)
        for i, (name, kind, pre, post) in enumerate(captured)
    ]
    return layers, logits.astype(np.float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def activation_curve(activation: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The activation function and its derivative at ``x``, by the module the model uses and autograd."""
    import torch

    from pipeline import model

    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = model.ACTIVATIONS[activation]()(t)
    (grad,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), grad.numpy()


def project(X: np.ndarray, method: str, *, seed: int, perplexity: float, pca_dims: int) -> np.ndarray:
    """2-D projection of the rows of ``X`` by PCA or t-SNE (PCA-reduced to ``pca_dims`` first)."""
    from threadpoolctl import threadpool_limits

    # torch, sklearn and scipy each bring their own OpenMP/OpenBLAS thread pools; once torch
    # has run, their threads contend on these 2-core machines: PCA of 360x64 took 1.5 s and
    # t-SNE of 360 digits 6-9 s, against 0.015 s and 1.2 s with one thread.
    with threadpool_limits(limits=1):
        return _project(np.asarray(X, dtype=np.float64), method, seed, perplexity, pca_dims)


def project_all(
    jobs: dict[tuple[str, str], np.ndarray], *, seed: int, perplexity: float, pca_dims: int
) -> dict[tuple[str, str], np.ndarray]:
    """``project`` for each (method, name) -> rows, under one thread-pool limit.

    One at a time on purpose: running the two t-SNE projections in two threads saved 0.3 s but
    made OpenBLAS (pthreads build, as in the numpy/scipy wheels) print "Detect OpenMP Loop and
    this application may hang".
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return {
            key: _project(np.asarray(X, dtype=np.float64), key[0], seed, perplexity, pca_dims)
            for key, X in jobs.items()
        }


def _project(X: np.ndarray, method: str, seed: int, perplexity: float, pca_dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    if method == "pca":
        return np.asarray(PCA(n_components=2, random_state=seed).fit_transform(X))
    from sklearn.manifold import TSNE

    if X.shape[1] > pca_dims:
        X = PCA(n_components=min(pca_dims, len(X)), random_state=seed).fit_transform(X)
    # sklearn requires perplexity < rows; (rows - 1) / 3 keeps three neighbourhoods' worth of points.
    perplexity = min(perplexity, max(1.0, (len(X) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500)
    return np.asarray(tsne.fit_transform(X))


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
    net: model.MLP, arrays: dict[str, np.ndarray], summary: dict[str, Any], cfg: Config
) -> dict[str, Any]:
    """Core, all but the 2-D projections: activations, their statistics, worst errors, and the
    rows to project (``projection_jobs``: (method, source) -> rows; ``projection_panels`` runs them)."""
    vcfg = cfg.visualize
    X, y = arrays["X_test"], arrays["y_test"]
    layers, logits = collect_activations(net, X)
    probs = softmax(logits)
    n_classes = summary["n_classes"]
    rows = layer_stats(layers, vcfg.saturation_margin, vcfg.saturation_share)
    means = [stats.class_means(layer.post, y, n_classes) for layer in layers]

    pick, inputs = projection_sample(arrays, summary, cfg)
    last = layers[-1].post[pick] if layers else X[pick]
    jobs = {
        (m, source): data for m in ("pca", "tsne") for source, data in (("inputs", inputs), ("hidden", last))
    }
    errors = stats.worst_errors(probs, y, vcfg.n_errors)
    return {
        "layers": layers,
        "stats": rows,
        "class_means": means,
        "probs": probs,
        "projection_jobs": jobs,
        "projection_rows": pick,
        "errors": errors,
        "n_misclassified": int((probs.argmax(axis=1) != y).sum()),
    }


def projection_panels(
    jobs: dict[tuple[str, str], np.ndarray],
    labels: np.ndarray,
    *,
    seed: int,
    perplexity: float,
    pca_dims: int,
) -> dict[str, Any]:
    """Core: the 2-D projections of ``analyse``'s jobs and how well they separate ``labels``."""
    projections = project_all(jobs, seed=seed, perplexity=perplexity, pca_dims=pca_dims)
    separation = {
        f"silhouette_{source}_{method}": stats.silhouette(points, labels)
        for (method, source), points in projections.items()
    }
    return {"projections": projections, "separation": separation}


def compute(
    net: model.MLP, arrays: dict[str, np.ndarray], summary: dict[str, Any], cfg: Config
) -> dict[str, Any]:
    """Core: every number and array the figures, the JSON and the metrics need."""
    result = analyse(net, arrays, summary, cfg)
    labels = arrays["y_test"][result["projection_rows"]]
    result.update(projection_panels(result["projection_jobs"], labels, **projection_settings(cfg)))
    return result


def projection_settings(cfg: Config) -> dict[str, Any]:
    vcfg = cfg.visualize
    return {"seed": cfg.seed, "perplexity": vcfg.tsne_perplexity, "pca_dims": vcfg.pca_before_tsne}


def metrics_of(net: model.MLP, result: dict[str, Any]) -> dict[str, float]:
    """Flat metrics for DVC and MLflow: one dead/saturated fraction per hidden layer, and more."""
    from pipeline import model

    metrics: dict[str, float] = {"n_parameters": float(model.n_parameters(net))}
    for i, row in enumerate(result["stats"], start=1):
        metrics[f"layer{i}_{row['statistic']}_fraction"] = row["fraction"]
    metrics.update(result["separation"])
    metrics["n_misclassified"] = float(result["n_misclassified"])
    metrics["tsne_samples"] = float(len(result["projection_rows"]))
    return metrics


def linear_layers(net: model.MLP) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, weight (out, in), bias (out,)) of each Linear layer, input side first."""
    from torch import nn

    return [
        (f"net.{name}", layer.weight.detach().numpy(), layer.bias.detach().numpy())
        for name, layer in net.net.named_children()
        if isinstance(layer, nn.Linear)
    ]


Recipe = tuple[Callable[..., Any], tuple[Any, ...]]


def projections_recipe(result: dict[str, Any], y: np.ndarray, classes: list[str]) -> Recipe:
    from pipeline.plots import activations as act_figs

    rows = result["projection_rows"]
    return act_figs.projections, (result["projections"], y[rows], classes, result["separation"])


def figure_recipes(
    cfg: Config,
    net: model.MLP,
    arrays: dict[str, np.ndarray],
    summary: dict[str, Any],
    history: dict[str, Any],
    best_epoch: int,
    result: dict[str, Any],
) -> dict[str, Recipe]:
    """name -> (plot function, its arguments) of every figure, in report order; the projections
    figure only once ``result`` has the projections."""
    from pipeline.plots import activations as act_figs
    from pipeline.plots import network as net_figs

    classes = summary["class_names"]
    features = summary["feature_names"]
    shape = summary["image_shape"]
    y = arrays["y_test"]
    layers: list[LayerActivations] = result["layers"]
    linear = linear_layers(net)
    first_weights = linear[0][1]
    n_units = min(cfg.visualize.n_units, first_weights.shape[0])

    recipes: dict[str, Recipe] = {}
    recipes["architecture"] = (net_figs.architecture, (layer_specs(net), shape))
    activations_used = sorted({layer.activation for layer in layers}) or [net.arch["activation"]]
    x = np.linspace(-5, 5, 401)
    curves = {name: activation_curve(name, x) for name in activations_used}
    pre = np.concatenate([layer.pre.ravel() for layer in layers]) if layers else None
    recipes["activation_functions"] = (net_figs.activation_functions, (x, curves, pre))
    recipes["weight_distributions"] = (net_figs.weight_distributions, (linear,))
    if shape:
        recipes["first_layer_images"] = (net_figs.unit_weight_images, (first_weights[:n_units], shape))
    else:
        recipes["first_layer_features"] = (net_figs.unit_weight_heatmap, (first_weights[:n_units], features))
    # History epoch k holds the weights after k epochs; the kept weights are after best_epoch + 1.
    recipes["weight_history"] = (net_figs.weight_history, (history, best_epoch + 1))

    if layers:
        vcfg = cfg.visualize
        recipes["activation_distributions"] = (
            act_figs.activation_distributions,
            (layers, result["stats"], vcfg.saturation_margin, vcfg.saturation_share),
        )
        ordered = [
            (row["label"], m[:, stats.unit_order(m)])
            for row, m in zip(result["stats"], result["class_means"], strict=True)
        ]
        recipes["class_activations"] = (act_figs.class_activation_heatmap, (ordered, classes))
    if "projections" in result:
        recipes["projections"] = projections_recipe(result, y, classes)

    errors = result["errors"]
    if len(errors):
        probs = result["probs"][errors]
        raw = arrays["X_test_raw"][errors]
        if shape:
            gallery = (raw, probs, y[errors], classes, shape)
            recipes["error_gallery"] = (act_figs.error_gallery_images, gallery)
        else:
            recipes["error_gallery"] = (
                act_figs.error_gallery_table,
                (raw, arrays["X_test"][errors], probs, y[errors], classes, features),
            )
    return recipes


def network_record(
    net: model.MLP, result: dict[str, Any], summary: dict[str, Any], y: np.ndarray
) -> dict[str, Any]:
    """The JSON the report reads: layer table, per-layer statistics, worst errors."""
    from pipeline import model

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
        "arch": net.arch,
        "n_parameters": model.n_parameters(net),
        "layers": layer_specs(net),
        "activation_stats": result["stats"],
        "errors": errors,
        "n_misclassified": result["n_misclassified"],
        "projection_samples": int(len(result["projection_rows"])),
        "separation": result["separation"],
    }


def run(cfg: Config) -> dict[str, float]:
    from pipeline.helper import Helper
    from pipeline.plots import render, render_rest

    started = time.perf_counter()
    # A helper process projects (sklearn's import and t-SNE, ~2.5 s) while this one loads torch and
    # the model and draws the other figures (~3 s): both cores at once. The inputs need no model,
    # so their projections are on their way before torch is even imported.
    settings = projection_settings(cfg)
    with Helper(warm=("sklearn.manifold", "sklearn.decomposition", "sklearn.metrics")) as helper:
        arrays, summary = prepare.load(cfg)
        pick, inputs = projection_sample(arrays, summary, cfg)
        y = arrays["y_test"]
        input_jobs = {(method, "inputs"): inputs for method in ("pca", "tsne")}
        input_panels = helper.submit(projection_panels, input_jobs, y[pick], **settings)
        from pipeline import model  # torch (~1 s): after the helper has its first job

        net = model.load(layout.model_file(cfg))
        run_info = tracking.load_run(layout.run_file(cfg))
        history = io.read_json(layout.weight_history_file(cfg), "train")
        best_epoch = int(io.read_json(cfg.paths.train_metrics, "train")["best_epoch"])

        result = analyse(net, arrays, summary, cfg)
        hidden_jobs = {key: rows for key, rows in result["projection_jobs"].items() if key[1] == "hidden"}
        hidden_panels = helper.submit(projection_panels, hidden_jobs, y[pick], **settings)
        folder, dpi = layout.figure_dir(cfg.paths.visualize), cfg.report.dpi
        recipes = figure_recipes(cfg, net, arrays, summary, history, best_epoch, result)
        figures = render_rest(recipes, {}, folder, dpi)
        parts = input_panels.result(), hidden_panels.result()
    # Merged in the order compute() gives them (the metrics file lists them in that order).
    order = list(result["projection_jobs"])
    merged = {key: part["projections"][key] for part in parts for key in part["projections"]}
    separation = {name: value for part in parts for name, value in part["separation"].items()}
    result["projections"] = {key: merged[key] for key in order}
    scores = [f"silhouette_{source}_{method}" for method, source in order]
    result["separation"] = {name: separation[name] for name in scores}
    plot, args = projections_recipe(result, y, summary["class_names"])
    projections = render(plot, folder / "projections.png", dpi, *args)
    # In report order: the projections come before the error gallery.
    names = list(recipes)
    figures.insert(names.index("error_gallery") if "error_gallery" in names else len(names), projections)

    metrics = metrics_of(net, result)
    io.write_json(layout.network_file(cfg), network_record(net, result, summary, arrays["y_test"]))
    # NaN (e.g. a silhouette with one class) is not valid JSON for DVC: write null instead.
    io.write_json(cfg.paths.visualize_metrics, {k: v if np.isfinite(v) else None for k, v in metrics.items()})
    record = layout.mlflow_record(cfg.paths.visualize)
    tracking.record(record, run_info, {f"viz_{k}": v for k, v in metrics.items()}, figures, "visualize")
    log.info(
        "Visualized %s: %s; %d figures in %.1f s -> %s",
        summary["dataset"],
        ", ".join(f"{r['label']} {r['fraction']:.1%} {r['statistic']}" for r in result["stats"]),
        len(figures),
        time.perf_counter() - started,
        cfg.paths.visualize,
    )
    return metrics


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
