"""Compare the runs of an MLflow experiment on one page: ``reports/compare.html``.

    python -m pipeline compare                              # every run of tracking.experiment
    python -m pipeline compare compare.metric=test_macro_f1
    python -m pipeline compare compare.run_name_prefix=sweep- "compare.filter=\"tags.sweep = 'lr'\""

Reads everything from MLflow (runs of `dvc exp run`, `dvc exp run --queue`,
Hydra multirun sweeps alike): a sortable leaderboard, each varying
hyperparameter against the metric, training curves overlaid, and the two best
runs' explanation figures side by side. The page is logged to MLflow as the
artifact of a small "comparison" run. Ranking, leaderboard and sentences:
``pipeline.report.comparison``; the figures: ``pipeline.plots.compare``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import io
from pipeline.config import Config
from pipeline.errors import GlassnetError
from pipeline.plots import compare as figs
from pipeline.plots import figures, save_png
from pipeline.report import comparison
from pipeline.report.comparison import CAPTIONS, explanation_agreement, rank, ranking, varying_params, verdict
from pipeline.report.html import ReportFigure, embed_figure, render_page
from pipeline.tracking import location, queries

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# Re-exported for callers that import them from the tool (tests/test_regression.py); they live in
# pipeline.report.comparison.
__all__ = [
    "SECTIONS",
    "NoRunsError",
    "explanation_agreement",
    "rank",
    "ranking",
    "render_compare",
    "run",
    "varying_params",
    "verdict",
]

# The report figures shown side by side for the two best runs (figure ids of pipeline.plots.figures).
BEST_RUN_FIGURES = ("class_importance", "feature_importance", "sanity_curve", "surrogate_fidelity")
# The explain stage's mean |SHAP| per class and feature, as each run logged it (layout.importance_file).
IMPORTANCE_ARTIFACT = "explain/importance.json"
MAX_EXPLAINED = 12  # runs whose explanations are fetched and compared, best first
MAX_CURVES = 12  # runs whose training curves are overlaid, best first

SECTIONS = (
    ("leaderboard", "Leaderboard"),
    ("hyperparameters", "Hyperparameters against the metric"),
    ("curves", "Training curves"),
    ("explanations", "Explanations across runs"),
    ("explanation", "Explanations of the two best runs"),
)


class NoRunsError(GlassnetError):
    """The experiment has no runs to compare."""


def run(cfg: Config) -> Path:
    """Query the runs, rank them, draw, render, write (and log the page as a comparison run)."""
    uri, c = location.resolve_uri(cfg.tracking.uri), cfg.compare
    experiment = c.experiment or cfg.tracking.experiment
    runs = queries.search_runs(uri, experiment, c.run_name_prefix, c.filter, c.max_runs)
    wanted = comparison.filter_text(c.run_name_prefix, c.filter)
    if not runs:
        raise NoRunsError(no_runs_message(experiment, uri, wanted))
    metric, higher = ranking(runs, c.metric, c.higher_is_better)
    ranked, missing = rank(runs, metric, higher)
    if not ranked:
        raise NoRunsError(no_metric_message(experiment, len(runs), metric))
    varying = varying_params(ranked)
    with tempfile.TemporaryDirectory() as tmp:
        folder, dpi = Path(tmp), cfg.report.dpi
        records = load_importances(uri, ranked[:MAX_EXPLAINED], folder / "importance")
        agreement = comparison.agreement_with_best(records, ranked[0].run_id)
        histories = load_histories(uri, ranked[:MAX_CURVES])
        context = {
            "title": f"Comparison of runs: {experiment}",
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "experiment": experiment,
            "tracking_uri": uri,
            "filter_text": wanted,
            **comparison.page_context(runs, ranked, missing, metric, higher, varying, agreement),
            "figures": {
                **draw_metric(ranked, varying, metric, histories, folder, dpi),
                **draw_explanations(ranked, varying, agreement, records, folder, dpi),
            },
            "best_two": [best_run_figures(uri, i, r, folder / f"best{i}") for i, r in enumerate(ranked[:2])],
        }
        html = render_compare(context)
    return write(html, Path(c.output), uri, experiment, metric, ranked)


def write(
    html: str, out: Path, uri: str, experiment: str, metric: str, ranked: list[queries.RunRecord]
) -> Path:
    """Write the page to ``out`` and log it to MLflow as the artifact of a comparison run."""
    io.write_text(out, html)
    logged = queries.log_comparison(uri, experiment, out, [r.run_id for r in ranked])
    log.info(
        "Compared %d runs of '%s' by %s -> %s (MLflow run %s)",
        len(ranked),
        experiment,
        metric,
        out.resolve(),
        logged,
    )
    return out.resolve()


def no_runs_message(experiment: str, uri: str, wanted: str) -> str:
    return (
        f"MLflow experiment '{experiment}' at {uri} has no runs matching {wanted}: run the "
        "pipeline first (`dvc repro` or `dvc exp run`), or check compare.experiment / "
        "compare.run_name_prefix / compare.filter."
    )


def no_metric_message(experiment: str, n_runs: int, metric: str) -> str:
    return (
        f"None of the {n_runs} runs of experiment '{experiment}' logged the metric '{metric}'; "
        "pick another with compare.metric=... (e.g. test_accuracy, test_rmse, best_val_loss)."
    )


def load_histories(uri: str, runs: list[queries.RunRecord]) -> dict[str, list[float]]:
    """ "#<rank> <name>" -> the run's validation loss per epoch, for the runs that logged one."""
    histories = {
        f"#{i + 1} {r.name}": queries.metric_history(uri, r.run_id, "val_loss") for i, r in enumerate(runs)
    }
    return {label: values for label, values in histories.items() if values}


def load_importances(uri: str, runs: list[queries.RunRecord], folder: Path) -> dict[str, dict[str, Any]]:
    """Run id -> the explain stage's importance record, for the runs that logged one."""
    found = {}
    for r in runs:
        path = queries.download_artifact(uri, r.run_id, IMPORTANCE_ARTIFACT, folder / r.run_id)
        if path is not None:
            found[r.run_id] = io.read_json(path, "explain")
    return found


def embed(fig: Figure, path: Path, dpi: int, title: str, caption: str, alt: str) -> ReportFigure:
    """Save ``fig`` as ``path`` and inline it in the page (its id: the file's stem)."""
    return embed_figure(save_png(fig, path, dpi), title, caption, alt)


def draw_metric(
    ranked: list[queries.RunRecord],
    varying: list[str],
    metric: str,
    histories: dict[str, list[float]],
    folder: Path,
    dpi: int,
) -> dict[str, list[ReportFigure]]:
    """Each varying hyperparameter against the ranking metric, and the training curves overlaid."""
    out: dict[str, list[ReportFigure]] = {"params": [], "curves": []}
    for i, key in enumerate(varying):
        fig = figs.param_vs_metric(
            values=[r.params.get(key, "—") for r in ranked],
            scores=[r.metrics[metric] for r in ranked],
            param=key,
            metric=metric,
        )
        alt = f"Scatter plot of {metric} against {key}, one point per run."
        out["params"].append(
            embed(fig, folder / f"param_{i}.png", dpi, f"{key} against {metric}", CAPTIONS["param"], alt)
        )
    if histories:
        fig = figs.overlaid_curves(curves=histories, ylabel="validation loss")
        alt = "Line chart of validation loss per epoch for each run."
        out["curves"].append(
            embed(fig, folder / "curves.png", dpi, "Training curves", CAPTIONS["curves"], alt)
        )
    return out


def draw_explanations(
    ranked: list[queries.RunRecord],
    varying: list[str],
    agreement: dict[str, float],
    records: dict[str, dict[str, Any]],
    folder: Path,
    dpi: int,
) -> dict[str, list[ReportFigure]]:
    """The varying hyperparameters against explanation agreement with the best run, and how the
    two best runs' explanations differ (per-class maps for images, the largest changes for tables)."""
    out: dict[str, list[ReportFigure]] = {"agreement": [], "difference": []}
    scored = [r for r in ranked if math.isfinite(agreement.get(r.run_id, math.nan))]
    if len(scored) > 1:
        for i, key in enumerate(varying):
            fig = figs.param_vs_metric(
                values=[r.params.get(key, "—") for r in scored],
                scores=[agreement[r.run_id] for r in scored],
                param=key,
                metric="explanation agreement with #1",
            )
            title = f"{key} against explanation agreement"
            alt = f"Scatter plot of explanation agreement with the best run against {key}, one point per run."
            out["agreement"].append(
                embed(fig, folder / f"agreement_{i}.png", dpi, title, CAPTIONS["agreement"], alt)
            )
    best, second = ranked[0].run_id, ranked[1].run_id if len(ranked) > 1 else ""
    if best not in records or second not in records or not math.isfinite(agreement.get(second, math.nan)):
        return out
    a, b = records[best], records[second]
    names = (f"#1 {ranked[0].name}", f"#2 {ranked[1].name}")
    path = folder / "difference.png"
    if a["image_shape"]:
        fig = figs.importance_difference_maps(
            best=np.asarray(a["importance"]),
            second=np.asarray(b["importance"]),
            image_shape=a["image_shape"],
            class_names=a["class_names"],
            names=names,
        )
        alt = "Grid of per-class maps of the difference in pixel importance between the two best runs."
        title, caption = "Where the two best runs look differently", CAPTIONS["difference"]
    else:
        fig = figs.importance_changes(
            best=np.asarray(a["importance"]),
            second=np.asarray(b["importance"]),
            feature_names=a["feature_names"],
            names=names,
        )
        alt = "Bar chart of the features whose importance changed most between the two best runs."
        title, caption = "The largest changes in importance", CAPTIONS["changes"]
    out["difference"].append(embed(fig, path, dpi, title, caption, alt))
    return out


def best_run_figures(uri: str, i: int, r: queries.RunRecord, folder: Path) -> dict[str, Any]:
    """The ``i``-th best run's BEST_RUN_FIGURES that it logged, with the report's captions for its task."""
    kind = r.tags.get("task", "classification")
    embedded = []
    for spec in map(figures.spec, BEST_RUN_FIGURES):
        path = queries.download_artifact(uri, r.run_id, f"{spec.stage}/{spec.id}.png", folder)
        if path is not None:
            embedded.append(embed_figure(path, spec.title_for(kind), spec.caption_for(kind), spec.alt))
    return {"rank": i + 1, "name": r.name, "figures": embedded}


def render_compare(context: dict[str, Any]) -> str:
    """Pure: context in, HTML out."""
    return render_page("compare.html.j2", SECTIONS, "compare", context)


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
