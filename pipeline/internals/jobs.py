"""visualize's figures: one ``plots.Job`` per figure of the registry (pipeline.plots.figures) the
network, its training and the analysis call for, in report order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import plots, stats
from pipeline.internals import activations, conv, network
from pipeline.nets import model
from pipeline.plots import figures

if TYPE_CHECKING:
    from pipeline.config import VisualizeConfig
    from pipeline.data.summary import Summary
    from pipeline.internals.analysis import Analysis
    from pipeline.task import Task

# The range of inputs the activation functions are drawn over.
CURVE_X = np.linspace(-5, 5, 401)


@dataclass(frozen=True)
class Training:
    """What the train stage recorded that visualize draws."""

    history: dict[str, Any]  # weight quantiles per layer and epoch; epoch k: after k epochs
    best_epoch: int  # the kept weights are those after best_epoch + 1 epochs
    gradient_norms: dict[str, Any] | None = None  # per layer and epoch, where train recorded them
    loss_line: dict[str, Any] | None = None  # the loss between the initial and the kept weights


def figure_jobs(
    net: model.Shaped,
    task: Task,
    found: Analysis,
    arrays: dict[str, np.ndarray],
    summary: Summary,
    training: Training,
    vcfg: VisualizeConfig,
    loss_target: str | None,
) -> list[plots.Job]:
    """Every figure visualize draws, in report order: the network (architecture, activation
    functions, weights), its training (weight history, gradient norms, loss line), what it does
    with the test rows (activations, projections, worst errors) and, for a convolutional network
    on images, its filters, feature maps and Grad-CAM maps. ``loss_target``: ``loss._target_``."""
    shape, features, classes = summary.image_shape, summary.feature_names, summary.class_names
    layers = found.layers
    jobs = [plots.job("architecture", specs=network.layer_specs(net, task), image_shape=shape)]
    if layers:
        jobs.append(
            plots.job(
                "activation_functions",
                x=CURVE_X,
                curves=activations.activation_curves(net.net, layers, CURVE_X),
                pre_activations=np.concatenate([layer.pre.ravel() for layer in layers]),
            )
        )
    jobs += weight_jobs(net, shape, features, vcfg.n_units)
    jobs += training_jobs(training, task.loss_label(loss_target))
    if layers:
        jobs.append(
            plots.job(
                "activation_distributions",
                layers=layers,
                layer_stats=found.stats,
                margin=vcfg.saturation_margin,
                share=vcfg.saturation_share,
            )
        )
    if found.class_means:  # per class: a regression has none
        ordered = [
            (row["label"], means[:, stats.unit_order(means)])
            for row, means in zip(found.stats, found.class_means, strict=True)
        ]
        jobs.append(plots.job("class_activations", layers=ordered, class_names=classes))
    jobs.append(
        plots.job(
            "projections",
            points=found.projections,
            y=found.labels,
            class_names=classes,
            separation=found.separation,
            task=task.name,
        )
    )
    jobs += conv.conv_jobs(net, task, arrays, shape, found.outputs, found.errors)
    if len(found.errors):
        jobs.append(
            plots.job(
                "error_gallery",
                raw=arrays["X_test_raw"][found.errors],
                scaled=arrays["X_test"][found.errors],
                outputs=found.outputs[found.errors],
                y_true=arrays["y_test"][found.errors],
                class_names=classes,
                feature_names=features,
                image_shape=shape,
                task=task.name,
            )
        )
    return in_report_order(jobs)


def weight_jobs(
    net: model.Shaped, image_shape: list[int] | None, features: list[str], n_units: int
) -> list[plots.Job]:
    """The weights' distributions per layer and, where the first layer weighs every input feature,
    its first ``n_units`` units as images (or a feature-named heatmap for tabular data)."""
    jobs = []
    weighted = network.weight_arrays(net)
    if weighted:
        jobs.append(plots.job("weight_distributions", layers=weighted))
    first = network.first_units(net, len(features))
    if first is not None:
        units = first[: min(n_units, first.shape[0])]
        if image_shape:
            jobs.append(plots.job("first_layer_images", weights=units, image_shape=image_shape))
        else:
            jobs.append(plots.job("first_layer_features", weights=units, feature_names=features))
    return jobs


def training_jobs(training: Training, loss_label: str) -> list[plots.Job]:
    """The weights' quantiles over the epochs and, where train recorded them, the gradient norms
    and the loss line (``loss_label``: the loss trained on, as the task names it)."""
    # History epoch k holds the weights after k epochs; the kept weights are after best_epoch + 1.
    jobs = [plots.job("weight_history", history=training.history, kept_epoch=training.best_epoch + 1)]
    if training.gradient_norms and training.gradient_norms.get("epochs"):
        jobs.append(plots.job("gradient_norms", history=training.gradient_norms))
    if training.loss_line:
        jobs.append(plots.job("loss_line", line=training.loss_line, loss_label=loss_label))
    return jobs


def in_report_order(jobs: list[plots.Job]) -> list[plots.Job]:
    """``jobs`` in the order the registry lists their figures."""
    order = {spec.id: i for i, spec in enumerate(figures.FIGURES)}
    return sorted(jobs, key=lambda item: order[item.figure_id])
