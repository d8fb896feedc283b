"""Stage 3: score the trained model on the test split.

    python -m pipeline evaluate

Classification: accuracy, macro F1, per-class precision/recall/F1, log loss and expected
calibration error; the confusion matrix; figures; a metrics JSON and per-sample (actual,
predicted) rows for DVC's confusion plot.

Regression: RMSE, MAE and R² in the target's units, beside the RMSE of always predicting the
train mean; predicted against actual, residuals against predicted and the residual
distribution; per-sample (actual, predicted) rows for DVC's scatter plot.

The scores are pipeline.metrics'; what differs between the tasks (predictions, scores, figures,
plot rows) the task object answers (pipeline.task).
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline import artifacts, io, layout, plots, task
from pipeline.config import Config
from pipeline.tracking import records, runs

log = logging.getLogger(__name__)

# DVC's plot files (``paths`` keys) and their columns. Every one is written, as DVC wants every
# declared output; those of the other task have no rows, so `dvc plots show` draws only what applies.
PLOT_FILES = {
    "predictions": ("actual", "predicted"),
    "calibration": ("confidence", "accuracy", "count"),
    "regression_plot": ("actual", "predicted"),
}


def load_history(cfg: Config) -> list[dict[str, float]]:
    """The train stage's per-epoch history, as numbers."""
    return [{k: float(v) for k, v in row.items()} for row in io.read_csv(cfg.paths.history, "train")]


def run(cfg: Config) -> dict[str, Any]:
    history = load_history(cfg)
    arrays, summary = artifacts.load_data(cfg)
    net = artifacts.load_model(cfg)
    run_info = runs.load_run(layout.run_file(cfg))
    t = task.of(summary)

    y_test = arrays["y_test"]
    predicted = t.predict(net, arrays["X_test"])
    scores = t.score(y_test, predicted, calibration_bins=cfg.evaluate.calibration_bins)
    jobs = [plots.job("training_curves", history=history), *t.evaluation_jobs(scores, y_test, predicted)]
    figures = plots.render_all(jobs, layout.figure_dir(cfg.paths.evaluate), cfg.report.dpi)

    io.write_json(layout.evaluation_file(cfg), scores)
    io.write_json(cfg.paths.evaluate_metrics, scores["metrics"])
    rows = t.plot_rows(scores, y_test, predicted)
    for key, columns in PLOT_FILES.items():
        io.write_csv(getattr(cfg.paths, key), columns, rows.get(key, []))
    records.write(
        layout.mlflow_record(cfg.paths.evaluate),
        run_info,
        {f"test_{k}": v for k, v in scores["metrics"].items()},
        [*figures, layout.evaluation_file(cfg)],
        "evaluate",
    )
    log.info("%s", t.describe_scores(scores))
    return scores


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
