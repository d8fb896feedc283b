"""Compare the runs of an MLflow experiment on one page: ``reports/compare.html``.

    python -m pipeline compare                              # every run of tracking.experiment
    python -m pipeline compare compare.metric=test_macro_f1
    python -m pipeline compare compare.run_name_prefix=sweep- "compare.filter=\"tags.sweep = 'lr'\""

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

import numpy as np

from pipeline import io
from pipeline.config import Config
from pipeline.errors import GlassnetError
from pipeline.explain import similarity
from pipeline.plots import figures
from pipeline.report.html import ReportFigure, embed_figure, fmt_num, render_page
from pipeline.tracking import location, queries

log = logging.getLogger(__name__)

# Parameters that say where things go, not how the network was made.
IGNORED_PARAM_PREFIXES = ("paths.", "tracking.", "compare.", "report.", "trainer.enable_progress_bar")
# Metrics logged once per epoch: drawn as curves, not leaderboard columns.
CURVE_METRICS = ("val_loss", "val_acc", "train_loss", "train_acc", "val_rmse", "train_rmse")
# Metric names (parts) where lower is better; any other metric ranks higher-is-better.
LOWER_IS_BETTER = ("rmse", "mae", "loss", "error", "ece", "bias")


def ranking(runs: list[queries.RunRecord], metric: str | None, higher: bool | None) -> tuple[str, bool]:
    """The metric to rank by and its direction: as configured, else from the runs' task (the train
    stage's ``task`` tag: test_accuracy for classifiers, test_rmse for regressions; the task of most
    runs wins) and from the metric's name (lower is better for RMSE, MAE, losses, errors, ECE)."""
    if metric is None:
        regressions = sum(r.tags.get("task") == "regression" for r in runs)
        metric = "test_rmse" if regressions * 2 > len(runs) else "test_accuracy"
    if higher is None:
        higher = not any(part in metric.lower() for part in LOWER_IS_BETTER)
    return metric, higher


# The report figures shown side by side for the two best runs (figure ids of pipeline.plots.figures).
BEST_RUN_FIGURES = ("class_importance", "feature_importance", "sanity_curve", "surrogate_fidelity")
# The explain stage's mean |SHAP| per class and feature, as each run logged it (layout.importance_file).
IMPORTANCE_ARTIFACT = "explain/importance.json"
MAX_EXPLAINED = 12  # runs whose explanations are fetched and compared, best first
# This page's own figures are drawn per run set (one per varying hyperparameter): their captions.
CAPTIONS = {
    "param": "Each point is a run; the y-axis is the ranking metric. A trend shows how much this "
    "hyperparameter matters; points at the same x that differ show the effect of the other settings.",
    "curves": "Validation loss after each epoch, one line per run. Lower is better; a curve that turns "
    "upward marks a run that started to overfit.",
    "agreement": "Each point is a run; the y-axis is the Spearman rank correlation between its global "
    "feature importance (mean |SHAP| summed over the classes) and the best run's: 1 means it ranks the "
    "features as the best run does. A trend shows that this hyperparameter changes what the network "
    "looks at, not only how well it does.",
    "difference": "Per class, the share of attention (mean |SHAP|, each run's map scaled to sum 1) each "
    "pixel gets in the best run minus in the runner-up: red where the best run relies on the pixel more, "
    "blue where the runner-up does. An evenly pale map means both networks look at the same places.",
    "changes": "The features whose share of global importance (mean |SHAP| summed over the classes, "
    "scaled to sum 1) differs most between the best run and the runner-up: red bars gained weight in the "
    "best run, blue bars lost it.",
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
    ranked: list[queries.RunRecord],
    missing: list[queries.RunRecord],
    metric: str,
    higher: bool,
    varying: list[str],
) -> list[str]:
    best = ranked[0]
    way = "higher" if higher else "lower"
    sentences = [f"Best run: {best.name} with {metric} = {fmt_num(best.metrics[metric])} ({way} is better)."]
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


def explanation_agreement(importances: dict[str, np.ndarray], best: str) -> dict[str, float]:
    """Run id -> Spearman rank correlation of its global feature importance (``importances``:
    (classes, features) mean |SHAP| per run, summed over the classes) with the ``best`` run's;
    NaN for a run explained on other features."""
    reference = importances[best].sum(axis=0)
    out = {}
    for run_id, importance in importances.items():
        total = importance.sum(axis=0)
        out[run_id] = (
            float(similarity.rank_agreement(reference[None], total[None])[0])
            if total.shape == reference.shape
            else math.nan
        )
    return out


def load_importances(uri: str, runs: list[queries.RunRecord], folder: Path) -> dict[str, dict[str, Any]]:
    """Run id -> the explain stage's importance record, for the runs that logged one."""
    found = {}
    for r in runs:
        path = queries.download_artifact(uri, r.run_id, IMPORTANCE_ARTIFACT, folder / r.run_id)
        if path is not None:
            found[r.run_id] = io.read_json(path, "explain")
    return found


def draw_explanations(
    ranked: list[queries.RunRecord],
    varying: list[str],
    agreement: dict[str, float],
    records: dict[str, dict[str, Any]],
    folder: Path,
    dpi: int,
) -> dict[str, list[Any]]:
    """The varying hyperparameters against explanation agreement with the best run, and how the
    two best runs' explanations differ (per-class maps for images, the largest changes for tables)."""
    from pipeline.plots import compare as figs
    from pipeline.plots import save_png

    out: dict[str, list[Any]] = {"agreement": [], "difference": []}
    scored = [r for r in ranked if math.isfinite(agreement.get(r.run_id, math.nan))]
    if len(scored) > 1:
        for i, key in enumerate(varying):
            fig = figs.param_vs_metric(
                [r.params.get(key, "—") for r in scored],
                [agreement[r.run_id] for r in scored],
                key,
                "explanation agreement with #1",
            )
            path = save_png(fig, folder / f"agreement_{i}.png", dpi)
            alt = f"Scatter plot of explanation agreement with the best run against {key}, one point per run."
            out["agreement"].append(
                embed_figure(path, f"{key} against explanation agreement", CAPTIONS["agreement"], alt)
            )
    best, second = ranked[0].run_id, ranked[1].run_id if len(ranked) > 1 else ""
    if best in records and second in records and agreement.get(second, math.nan) == agreement.get(second):
        a, b = records[best], records[second]
        names = (f"#1 {ranked[0].name}", f"#2 {ranked[1].name}")
        if a["image_shape"]:
            fig = figs.importance_difference_maps(
                np.asarray(a["importance"]),
                np.asarray(b["importance"]),
                a["image_shape"],
                a["class_names"],
                names,
            )
            path = save_png(fig, folder / "difference.png", dpi)
            alt = "Grid of per-class maps of the difference in pixel importance between the two best runs."
            out["difference"].append(
                embed_figure(path, "Where the two best runs look differently", CAPTIONS["difference"], alt)
            )
        else:
            fig = figs.importance_changes(
                np.asarray(a["importance"]), np.asarray(b["importance"]), a["feature_names"], names
            )
            path = save_png(fig, folder / "difference.png", dpi)
            alt = "Bar chart of the features whose importance changed most between the two best runs."
            out["difference"].append(
                embed_figure(path, "The largest changes in importance", CAPTIONS["changes"], alt)
            )
    return out


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


def logged_figures(uri: str, run_id: str, folder: Path, kind: str = "classification") -> list[ReportFigure]:
    """Those of BEST_RUN_FIGURES the run logged, embedded with the report's captions for its task."""
    embedded = []
    for spec in map(figures.spec, BEST_RUN_FIGURES):
        path = queries.download_artifact(uri, run_id, f"{spec.stage}/{spec.id}.png", folder)
        if path is not None:
            embedded.append(embed_figure(path, spec.title_for(kind), spec.caption_for(kind), spec.alt))
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
    metric, higher = ranking(runs, c.metric, c.higher_is_better)
    ranked, missing = rank(runs, metric, higher)
    if not ranked:
        raise NoRunsError(
            f"None of the {len(runs)} runs of experiment '{experiment}' logged the metric '{metric}'; "
            "pick another with compare.metric=... (e.g. test_accuracy, test_rmse, best_val_loss)."
        )
    varying = varying_params(ranked)
    columns = metric_columns(ranked, metric)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        histories = {
            f"#{i + 1} {r.name}": queries.metric_history(uri, r.run_id, "val_loss")
            for i, r in enumerate(ranked[:12])
        }
        drawn = draw(
            ranked, varying, metric, {k: v for k, v in histories.items() if v}, folder, cfg.report.dpi
        )
        records = load_importances(uri, ranked[:MAX_EXPLAINED], folder / "importance")
        agreement = (
            explanation_agreement(
                {k: np.asarray(v["importance"]) for k, v in records.items()}, ranked[0].run_id
            )
            if ranked[0].run_id in records
            else {}
        )
        drawn.update(draw_explanations(ranked, varying, agreement, records, folder, cfg.report.dpi))
        best_two = [
            {
                "rank": i + 1,
                "name": r.name,
                "figures": logged_figures(
                    uri, r.run_id, folder / f"best{i}", r.tags.get("task", "classification")
                ),
            }
            for i, r in enumerate(ranked[:2])
        ]
        context = {
            "title": f"Comparison of runs: {experiment}",
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "experiment": experiment,
            "tracking_uri": uri,
            "metric": metric,
            "higher_is_better": higher,
            "filter_text": filter_text,
            "runs": runs,
            "verdict": verdict(ranked, missing, metric, higher, varying),
            "varying": varying,
            "metric_columns": columns,
            "leaderboard": [
                {
                    "rank": i + 1,
                    "name": r.name,
                    "run_id": r.run_id,
                    "params": {k: r.params.get(k, "—") for k in varying},
                    "metrics": {m: r.metrics.get(m, math.nan) for m in columns},
                    "agreement": agreement.get(r.run_id, math.nan),
                }
                for i, r in enumerate(ranked)
            ],
            "missing": [r.name for r in missing],
            "figures": drawn,
            "best_two": best_two,
            "agreement": agreement,
        }
        html = render_compare(context)
    out = Path(c.output)
    io.write_text(out, html)
    comparison = queries.log_comparison(uri, experiment, out, [r.run_id for r in ranked])
    log.info(
        "Compared %d runs of '%s' by %s -> %s (MLflow run %s)",
        len(ranked),
        experiment,
        metric,
        out.resolve(),
        comparison,
    )
    return out


SECTIONS = (
    ("leaderboard", "Leaderboard"),
    ("hyperparameters", "Hyperparameters against the metric"),
    ("curves", "Training curves"),
    ("explanations", "Explanations across runs"),
    ("explanation", "Explanations of the two best runs"),
)


def render_compare(context: dict[str, Any]) -> str:
    """Pure: context in, HTML out."""
    return render_page("compare.html.j2", SECTIONS, "compare", context)


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
