"""visualize's core: what the network does with the test rows (activations per layer, their
statistics, the worst errors), the 2-D projections of the inputs and of the last hidden layer, and
the numbers the stage writes (metrics, ``network.json``, notes for the log).

    found = analysis.analyse(net, X_test, y_test, task, vcfg, seed)
    inputs = analysis.projection_inputs(arrays, found.rows, image=True)
    found = analysis.project(found, inputs, task, seed=seed, perplexity=30.0, pca_dims=50)
    metrics = analysis.metrics_of(net, found, task, y_test)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import stats
from pipeline.internals import activations, network, projection
from pipeline.internals.activations import LayerActivations
from pipeline.nets import model

if TYPE_CHECKING:
    from pipeline.config import VisualizeConfig
    from pipeline.task import Task


@dataclass(frozen=True)
class Analysis:
    """What the network did with the test rows."""

    layers: list[LayerActivations]  # per elementwise nonlinearity, in forward order
    stats: list[dict[str, Any]]  # per layer: activations.layer_stats
    outputs: np.ndarray  # the task's predictions: class probabilities (rows, classes) or values (rows,)
    errors: np.ndarray  # the worst errors' rows, worst first (task.pick_errors)
    class_means: list[np.ndarray]  # per layer: (classes, units) mean outputs; none for a regression
    rows: np.ndarray  # the test rows the 2-D projections show
    labels: np.ndarray  # their targets: classes, or a regression's values
    hidden: np.ndarray  # the last hidden layer's outputs for those rows (the inputs without one)
    # (method, source) -> the 2-D points, and each projection's score (see ``project``)
    projections: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    separation: dict[str, float] = field(default_factory=dict)


def projection_sample(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    """The test rows the 2-D projections show: seeded, at most ``max_rows`` (visualize.tsne_max_samples);
    the same rows in all four panels, so the point clouds can be compared."""
    return stats.subsample(n_rows, max_rows, seed)


def projection_inputs(arrays: dict[str, np.ndarray], rows: np.ndarray, image: bool) -> np.ndarray:
    """The input features of ``rows`` as the projections take them. Images: raw pixels (one unit for
    all columns; standardizing blows up near-constant border pixels and a few rows then dominate the
    PCA). Tabular: the standardized features, else the column with the largest unit would dominate."""
    return (arrays["X_test_raw"] if image else arrays["X_test"])[rows]


def analyse(
    net: model.Shaped, X: np.ndarray, y: np.ndarray, task: Task, vcfg: VisualizeConfig, seed: int
) -> Analysis:
    """The network's activations on the test rows ``X`` (targets ``y``) while it predicts them, their
    statistics, the worst errors and the rows to project (all but the projections: see ``project``)."""
    layers, outputs = activations.capture(net.net, lambda: task.predict(net, X))
    rows = projection_sample(len(y), vcfg.tsne_max_samples, seed)
    return Analysis(
        layers=layers,
        stats=activations.layer_stats(layers, vcfg.saturation_margin, vcfg.saturation_share),
        outputs=outputs,
        errors=task.pick_errors(outputs, y, vcfg.n_errors),
        class_means=task.class_means([layer.post for layer in layers], y),
        rows=rows,
        labels=y[rows],
        hidden=layers[-1].post[rows] if layers else X[rows],
    )


def project(
    found: Analysis, inputs: np.ndarray, task: Task, *, seed: int, perplexity: float, pca_dims: int
) -> Analysis:
    """``found`` with the PCA and t-SNE of ``inputs`` (the projected rows' input features, see
    ``projection_inputs``) and of the last hidden layer, and how well each arranges the rows' labels
    (``task.separation``, named ``<task.separation_metric>_<source>_<method>``)."""
    sources = (("inputs", inputs), ("hidden", found.hidden))
    jobs = {(method, source): data for method in ("pca", "tsne") for source, data in sources}
    points, scores = projection.panels(
        jobs,
        found.labels,
        score=task.separation,
        metric=task.separation_metric,
        seed=seed,
        perplexity=perplexity,
        pca_dims=pca_dims,
    )
    return dataclasses.replace(found, projections=points, separation=scores)


def size_notes(
    vcfg: Any, n_test: int, n_units: int, n_misclassified: int, errors: str = "misclassified test rows"
) -> list[str]:
    """One sentence per size setting that is an upper bound the data cut (for the log): t-SNE's
    rows, the first layer's units drawn, the worst errors shown (``n_misclassified`` of the
    ``errors``: for a regression, every test row; see ``Task.error_pool``)."""
    notes = []
    for key, wanted, available, what in (
        ("tsne_max_samples", vcfg.tsne_max_samples, n_test, "rows of the test split: projected"),
        ("n_units", vcfg.n_units, n_units, "units of the first layer: drew"),
        ("n_errors", vcfg.n_errors, n_misclassified, f"{errors}: showed"),
    ):
        if wanted > available:
            notes.append(f"visualize.{key} = {wanted} is more than the {available} {what} all {available}")
    return notes


def notes(
    net: model.Shaped, found: Analysis, task: Task, y: np.ndarray, vcfg: Any, n_features: int
) -> list[str]:
    """``size_notes`` of a run: the test split's rows, the first layer's units, the task's error pool."""
    first = network.first_units(net, n_features)
    n_first = first.shape[0] if first is not None else vcfg.n_units
    return size_notes(vcfg, len(y), n_first, *task.error_pool(found.outputs, y))


def metrics_of(
    net: model.Shaped,
    found: Analysis,
    task: Task,
    y: np.ndarray,
    gradient_norms: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Flat metrics for DVC and MLflow: one dead/saturated fraction per hidden layer, the
    projections' scores, the task's metric of the errors (``Task.error_metrics``: the count of
    misclassified test rows, or a regression's largest absolute error), the projected rows and,
    given the train stage's ``gradient_norms``, how much the gradient shrank toward the input."""
    metrics: dict[str, float] = {"n_parameters": float(model.n_parameters(net))}
    for i, row in enumerate(found.stats, start=1):
        metrics[f"layer{i}_{row['statistic']}_fraction"] = row["fraction"]
    metrics.update(found.separation)
    metrics.update(task.error_metrics(found.outputs, y))
    metrics["tsne_samples"] = float(len(found.rows))
    if gradient_norms is not None:
        metrics["gradient_depth_ratio"] = stats.gradient_depth_ratio(gradient_norms)
    return metrics


def network_record(net: model.Shaped, found: Analysis, task: Task, y: np.ndarray) -> dict[str, Any]:
    """The JSON the report reads: layer table, per-layer statistics, worst errors (as the task
    describes them: ``Task.error_record``), the projections' sample size and scores."""
    return {
        **task.record_header(),
        "n_parameters": model.n_parameters(net),
        "layers": network.layer_specs(net, task),
        "activation_stats": found.stats,
        **task.error_record(found.outputs, y, found.errors),
        "projection_samples": int(len(found.rows)),
        "separation": found.separation,
    }
