"""Stage 4: explain the trained model's test predictions with SHAP, and measure how far to trust it.

    python -m pipeline explain                          # DeepSHAP (conf/explain/deep.yaml)
    python -m pipeline explain explain=kernel explain.options.nsamples=1000

Loads the prepared splits and the trained network; explains ``explain.n_samples`` test rows
against ``explain.n_background`` train rows with the explainer ``explain.options._target_``
names (pipeline.explain.explainers), and checks that explanation (pipeline.explain.core:
additivity, faithfulness, agreement with Integrated Gradients, the weight-randomisation check,
the surrogate tree); writes shap.npz, importance.json, checks.json, the figures, the DVC plot
files, metrics/explain.json and the record publish logs to MLflow.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline import artifacts, io, layout, plots, progress, task
from pipeline.config import Config
from pipeline.explain import core, explainers, jobs
from pipeline.tracking import records, runs

log = logging.getLogger(__name__)

SANITY_COLUMNS = ("layers_randomised", "layer", "rank_median", "signed_rank_median", "ssim_median")
SURROGATE_COLUMNS = ("depth", "fidelity", "tree_accuracy")


def run(cfg: Config) -> dict[str, Any]:
    progress.mode()  # a bad GLASSNET_PROGRESS stops the stage now, not minutes in
    ecfg = cfg.explain
    explainer = explainers.from_config(ecfg.options, cfg.seed)  # so does a bad explainer or option
    arrays, summary = artifacts.load_data(cfg)
    net = artifacts.load_model(cfg)
    run_info = runs.load_run(layout.run_file(cfg))
    the_task = task.of(summary)
    X_test, raw_test = arrays["X_test"], arrays["X_test_raw"]
    result = core.explain(
        net,
        X_test,
        arrays["y_test"],
        arrays["X_train"],
        explainer=explainer,
        config=ecfg,
        task=the_task,
        seed=cfg.seed,
    )
    path = explainers.path_of(explainer, net, arrays["X_train"][:4])
    folder = layout.figure_dir(cfg.paths.explain)
    plots.clear(folder)
    drawn = jobs.figure_jobs(result, the_task, X_test, raw_test, ecfg.n_examples)
    figures = plots.render_all(drawn, folder, cfg.report.dpi)
    # What was asked, beside what was used (n_samples, n_background): the report says when they differ.
    metrics = {
        **result.metrics,
        "n_samples_requested": ecfg.n_samples,
        "n_background_requested": ecfg.n_background,
    }
    checks = jobs.checks_record(result, the_task, X_test, raw_test, ecfg.surrogate.n_rules)
    name = explainers.name_of(explainer)
    write(cfg, result, summary, checks, {**metrics, "explainer": name, "path": path})
    prefixed = {f"shap_{k}": v for k, v in metrics.items()}
    logged = [*figures, layout.importance_file(cfg), layout.checks_file(cfg)]
    records.write(layout.mlflow_record(cfg.paths.explain), run_info, prefixed, logged, "explain")
    log.info("%s", describe(name, path, metrics))
    return metrics


def describe(name: str, path: str, metrics: dict[str, Any]) -> str:
    """The stage's result in one line, for the log."""
    m = metrics
    return (
        f"SHAP ({name}, {path}) on {m['n_samples']} samples vs {m['n_background']} background rows in "
        f"{m['explainer_seconds']:.1f} s: additivity error max {m['additivity_max_error']:.2e}; "
        f"faithfulness area {m['faithfulness_area']:.3f}; agreement with Integrated Gradients: "
        f"median Spearman {m['ig_spearman_median']:.2f}"
    )


def write(
    cfg: Config, result: core.Explanation, summary: Any, checks: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """shap.npz, importance.json, checks.json, the DVC plot files (written whether or not a check
    ran: DVC expects every declared output) and metrics/explain.json."""
    io.write_npz(layout.shap_file(cfg), **result.arrays)
    io.write_json(
        layout.importance_file(cfg),
        {
            "class_names": summary.class_names,
            "feature_names": summary.feature_names,
            "image_shape": summary.image_shape,
            "importance": result.arrays["importance"].tolist(),  # (classes, features)
        },
    )
    io.write_json(layout.checks_file(cfg), checks)
    sanity_rows = result.sanity.rows() if result.sanity is not None else []
    io.write_csv(cfg.paths.sanity_plot, SANITY_COLUMNS, [[r[k] for k in SANITY_COLUMNS] for r in sanity_rows])
    tree_rows = result.surrogate.rows() if result.surrogate is not None else []
    io.write_csv(
        cfg.paths.surrogate_plot, SURROGATE_COLUMNS, [[r[k] for k in SURROGATE_COLUMNS] for r in tree_rows]
    )
    io.write_json(cfg.paths.explain_metrics, metrics)


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
