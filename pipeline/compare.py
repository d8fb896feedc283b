"""Compare the runs of an MLflow experiment on one page: ``reports/compare.html``.

    python -m pipeline.compare                              # every run of tracking.experiment
    python -m pipeline.compare compare.metric=test_macro_f1
    python -m pipeline.compare compare.run_name_prefix=sweep- "compare.filter=\"tags.sweep = 'lr'\""

Reads everything from MLflow (runs of `dvc exp run`, `dvc exp run --queue`,
Hydra multirun sweeps alike): a sortable leaderboard, each varying
hyperparameter against the metric, training curves overlaid, and the two best
runs' explanation figures side by side. The page is logged to MLflow as the
artifact of a small "comparison" run.
"""

from __future__ import annotations

import logging
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline import figures, io
from pipeline.config import Config
from pipeline.errors import GlassnetError
from pipeline.html import ReportFigure, embed_figure, fmt_num, render_page
from pipeline.tracking import location, queries

log = logging.getLogger(__name__)

# Parameters that say where things go, not how the network was made.
IGNORED_PARAM_PREFIXES = ("paths.", "tracking.", "compare.", "report.", "trainer.enable_progress_bar")
# Metrics logged once per epoch: drawn as curves, not leaderboard columns.
CURVE_METRICS = ("val_loss", "val_acc", "train_loss", "train_acc")
# The report figures shown side by side for the two best runs (figure ids of pipeline.figures).
BEST_RUN_FIGURES = ("class_importance", "feature_importance")
# This page's own figures are drawn per run set (one per varying hyperparameter): their captions.
CAPTIONS = {
    "param": "Each point is a run; the y-axis is the ranking metric. A trend shows how much this "
    "hyperparameter matters; points at the same x that differ show the effect of the other settings.",
    "curves": "Validation loss after each epoch, one line per run. Lower is better; a curve that turns "
    "upward marks a run that started to overfit.",
}


class NoRunsError(GlassnetError):
    """The experiment has no runs to compare."""


def rank(
    runs: list[queries.RunRecord], metric: str, higher_is_better: bool
) -> tuple[list[queries.RunRecord], list[queries.RunRecord]]:
    """(runs with ``metric``, best first; runs without it)."""
    scored = [r for r in runs if metric in r.metrics and math.isfinite(r.metrics[metric])]
    missing = [r for r in runs if r not in scored]
    scored.sort(key=lambda r: r.metrics[metric], reverse=higher_is_better)
    return scored, missing


def varying_params(runs: list[queries.RunRecord]) -> list[str]:
    """Parameter keys whose value differs between runs (a key missing in a run counts as a value)."""
    keys = sorted({k for r in runs for k in r.params if not k.startswith(IGNORED_PARAM_PREFIXES)})
    return [k for k in keys if len({r.params.get(k, "—") for r in runs}) > 1]


def metric_columns(runs: list[queries.RunRecord], metric: str) -> list[str]:
    """The ranking metric first, then every other scalar metric the runs logged."""
    others = sorted({k for r in runs for k in r.metrics} - {metric, *CURVE_METRICS, "epoch"})
    return [metric, *others]


def verdict(
    ranked: list[queries.RunRecord], missing: list[queries.RunRecord], metric: str, varying: list[str]
) -> list[str]:
    best = ranked[0]
    sentences = [f"Best run: {best.name} with {metric} = {fmt_num(best.metrics[metric])}."]
    if len(ranked) > 1:
        worst = ranked[-1]
        sentences.append(
            f"The {len(ranked)} ranked runs span {fmt_num(worst.metrics[metric])} to "
            f"{fmt_num(best.metrics[metric])}."
        )
        changed = [k for k in varying if ranked[0].params.get(k) != ranked[1].params.get(k)]
        if changed:
            diffs = ", ".join(
                f"{k} = {best.params.get(k, '—')} (vs {ranked[1].params.get(k, '—')})" for k in changed[:4]
            )
            sentences.append(f"The best run differs from the runner-up in {diffs}.")
    if missing:
        sentences.append(f"{len(missing)} run(s) have no {metric} and are listed but not ranked.")
    return sentences


def draw(
    ranked: list[queries.RunRecord],
    varying: list[str],
    metric: str,
    histories: dict[str, list[float]],
    folder: Path,
    dpi: int,
) -> dict[str, list[Any]]:
    from pipeline.plots import compare as figs
    from pipeline.plots import save_png

    out: dict[str, list[Any]] = {"params": [], "curves": []}
    for i, key in enumerate(varying):
        fig = figs.param_vs_metric(
            [r.params.get(key, "—") for r in ranked], [r.metrics[metric] for r in ranked], key, metric
        )
        path = save_png(fig, folder / f"param_{i}.png", dpi)
        alt = f"Scatter plot of {metric} against {key}, one point per run."
        out["params"].append(embed_figure(path, f"{key} against {metric}", CAPTIONS["param"], alt))
    if histories:
        fig = figs.overlaid_curves(histories, "validation loss")
        path = save_png(fig, folder / "curves.png", dpi)
        alt = "Line chart of validation loss per epoch for each run."
        out["curves"].append(embed_figure(path, "Training curves", CAPTIONS["curves"], alt))
    return out


def logged_figures(uri: str, run_id: str, folder: Path) -> list[ReportFigure]:
    """Those of BEST_RUN_FIGURES the run logged, embedded with the report's captions."""
    embedded = []
    for spec in map(figures.spec, BEST_RUN_FIGURES):
        path = queries.download_artifact(uri, run_id, f"{spec.stage}/{spec.id}.png", folder)
        if path is not None:
            embedded.append(embed_figure(path, spec.title, spec.caption, spec.alt))
    return embedded


def run(cfg: Config) -> Path:
    uri = location.resolve_uri(cfg.tracking.uri)
    c = cfg.compare
    experiment = c.experiment or cfg.tracking.experiment
    runs = queries.search_runs(uri, experiment, c.run_name_prefix, c.filter, c.max_runs)
    conditions = []
    if c.run_name_prefix:
        conditions.append(f"name starts with '{c.run_name_prefix}'")
    if c.filter:
        conditions.append(c.filter)
    filter_text = " AND ".join(conditions) or "all runs"
    if not runs:
        raise NoRunsError(
            f"MLflow experiment '{experiment}' at {uri} has no runs matching {filter_text}: run the "
            "pipeline first (`dvc repro` or `dvc exp run`), or check compare.experiment / "
            "compare.run_name_prefix / compare.filter."
        )
    ranked, missing = rank(runs, c.metric, c.higher_is_better)
    if not ranked:
        raise NoRunsError(
            f"None of the {len(runs)} runs of experiment '{experiment}' logged the metric '{c.metric}'; "
            "pick another with compare.metric=... (e.g. test_accuracy, best_val_loss)."
        )
    varying = varying_params(ranked)
    columns = metric_columns(ranked, c.metric)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        histories = {
            f"#{i + 1} {r.name}": queries.metric_history(uri, r.run_id, "val_loss")
            for i, r in enumerate(ranked[:12])
        }
        drawn = draw(
            ranked, varying, c.metric, {k: v for k, v in histories.items() if v}, folder, cfg.report.dpi
        )
        best_two = [
            {"rank": i + 1, "name": r.name, "figures": logged_figures(uri, r.run_id, folder / f"best{i}")}
            for i, r in enumerate(ranked[:2])
        ]
        context = {
            "title": f"Comparison of runs: {experiment}",
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "experiment": experiment,
            "tracking_uri": uri,
            "metric": c.metric,
            "higher_is_better": c.higher_is_better,
            "filter_text": filter_text,
            "runs": runs,
            "verdict": verdict(ranked, missing, c.metric, varying),
            "varying": varying,
            "metric_columns": columns,
            "leaderboard": [
                {
                    "rank": i + 1,
                    "name": r.name,
                    "run_id": r.run_id,
                    "params": {k: r.params.get(k, "—") for k in varying},
                    "metrics": {m: r.metrics.get(m, math.nan) for m in columns},
                }
                for i, r in enumerate(ranked)
            ],
            "missing": [r.name for r in missing],
            "figures": drawn,
            "best_two": best_two,
        }
        html = render_compare(context)
    out = Path(c.output)
    io.write_text(out, html)
    comparison = queries.log_comparison(uri, experiment, out, [r.run_id for r in ranked])
    log.info(
        "Compared %d runs of '%s' by %s -> %s (MLflow run %s)",
        len(ranked),
        experiment,
        c.metric,
        out.resolve(),
        comparison,
    )
    return out


SECTIONS = (
    ("leaderboard", "Leaderboard"),
    ("hyperparameters", "Hyperparameters against the metric"),
    ("curves", "Training curves"),
    ("explanation", "Explanations of the two best runs"),
)


def render_compare(context: dict[str, Any]) -> str:
    """Pure: context in, HTML out."""
    return render_page("compare.html.j2", SECTIONS, "compare", context)


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
