"""Stage 5: draw the trained network itself: structure, activation functions, weights,
activations on the test set, and its worst mistakes.

    python -m pipeline visualize
    python -m pipeline visualize visualize.n_units=32 visualize.tsne_max_samples=500

Reads the prepared data, the model and the per-epoch weight history written by
train. Writes figures to ``<paths.visualize>/figures/``, ``network.json`` (layer
table, per-layer activation statistics, worst errors) and the metrics file
(dead/saturated unit fractions per layer, parameter count, class separation of
the 2-D projections), all also logged to the run in MLflow.

Image-only figures (first-layer weights as images, error gallery of images) are
drawn when ``summary.image_shape`` is set; tabular data get feature-named
heatmaps and tables instead.

For a regression (pipeline.task) the network's one output is the prediction in the target's
units: the projections are coloured by the target's value (their score is the neighbour R² of
the target, ``target_knn_r2_*``, instead of the class silhouette), the errors are the largest
absolute errors (actual against predicted), the loss line names the regression loss, and the
per-class views (class activations, Grad-CAM per class) are not drawn.

The work is pipeline.internals' (analysis: activations, errors, projections, metrics; jobs: the
figures); what differs between the tasks the task object answers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts, io, layout, plots, progress, task
from pipeline.config import Config
from pipeline.internals import analysis, jobs
from pipeline.tracking import records, runs

log = logging.getLogger(__name__)


def load_training(cfg: Config) -> jobs.Training:
    """What the train stage recorded: the weight history, the best epoch and, where it wrote them,
    the gradient norms and the loss line."""
    gradients, line = layout.gradient_norms_file(cfg), layout.loss_line_file(cfg)
    return jobs.Training(
        history=io.read_json(layout.weight_history_file(cfg), "train"),
        best_epoch=int(io.read_json(cfg.paths.train_metrics, "train")["best_epoch"]),
        gradient_norms=io.read_json(gradients, "train") if gradients.exists() else None,
        loss_line=io.read_json(line, "train") if line.exists() else None,
    )


def run(cfg: Config) -> dict[str, float]:
    progress.mode()  # a bad GLASSNET_PROGRESS stops the stage now, not minutes in
    started = time.perf_counter()
    vcfg = cfg.visualize
    arrays, summary = artifacts.load_data(cfg)
    net, t, y = artifacts.load_model(cfg), task.of(summary), arrays["y_test"]
    run_info, training = runs.load_run(layout.run_file(cfg)), load_training(cfg)

    found = analysis.analyse(net, arrays["X_test"], y, t, vcfg, cfg.seed)
    inputs = analysis.projection_inputs(arrays, found.rows, image=bool(summary.image_shape))
    found = analysis.project(
        found, inputs, t, seed=cfg.seed, perplexity=vcfg.tsne_perplexity, pca_dims=vcfg.pca_before_tsne
    )
    folder = layout.figure_dir(cfg.paths.visualize)
    plots.clear(folder)
    figures = jobs.figure_jobs(net, t, found, arrays, summary, training, vcfg, cfg.loss._target_)
    paths = plots.render_all(figures, folder, cfg.report.dpi)

    for note in analysis.notes(net, found, t, y, vcfg, len(summary.feature_names)):
        log.info("%s.", note)
    metrics = analysis.metrics_of(net, found, t, y, training.gradient_norms)
    write(cfg, run_info, metrics, analysis.network_record(net, found, t, y), paths)
    log.info(
        "Visualized %s: %s; %d figures in %.1f s -> %s",
        summary.dataset,
        ", ".join(f"{r['label']} {r['fraction']:.1%} {r['statistic']}" for r in found.stats),
        len(paths),
        time.perf_counter() - started,
        cfg.paths.visualize,
    )
    return metrics


def write(
    cfg: Config, run_info: runs.RunInfo, metrics: dict[str, float], record: dict[str, Any], paths: list[Path]
) -> None:
    """``network.json``, the metrics file and what goes to the run in MLflow (metrics prefixed ``viz_``)."""
    io.write_json(layout.network_file(cfg), record)
    # NaN (e.g. a silhouette with one class) is not valid JSON for DVC: write null instead.
    io.write_json(cfg.paths.visualize_metrics, {k: v if np.isfinite(v) else None for k, v in metrics.items()})
    prefixed = {f"viz_{k}": v for k, v in metrics.items()}
    records.write(layout.mlflow_record(cfg.paths.visualize), run_info, prefixed, paths, "visualize")


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
