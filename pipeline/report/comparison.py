"""The comparison page's core: runs in, ranking, leaderboard rows and sentences out.

    metric, higher = ranking(runs, None, None)   # the runs' task decides: test_accuracy / test_rmse
    ranked, missing = rank(runs, metric, higher)
    sentences = verdict(ranked, missing, metric, higher, varying_params(ranked))

No MLflow, no files: ``pipeline.tools.compare`` reads the runs, draws and writes the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline import task
from pipeline.explain import similarity
from pipeline.report.formats import fmt_num
from pipeline.task import Task
from pipeline.tracking.queries import RunRecord

# Parameters that say where things go, not how the network was made.
IGNORED_PARAM_PREFIXES = ("paths.", "tracking.", "compare.", "report.", "trainer.enable_progress_bar")
# Metrics logged once per epoch: drawn as curves, not leaderboard columns.
CURVE_METRICS = ("val_loss", "val_acc", "train_loss", "train_acc", "val_rmse", "train_rmse")
# The page's own figures, drawn per run set (one per varying hyperparameter): their captions.
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


def task_of(runs: Sequence[RunRecord]) -> type[Task]:
    """The task of most ``runs`` (the train stage's ``task`` tag; classification on a tie)."""
    regressions = sum(r.tags.get("task") == task.REGRESSION for r in runs)
    return task.kind(task.REGRESSION if regressions * 2 > len(runs) else task.CLASSIFICATION)


def ranking(runs: Sequence[RunRecord], metric: str | None, higher: bool | None) -> tuple[str, bool]:
    """The metric to rank by and its direction: as configured, else as the task of the runs says
    (its ``ranking_metric``; lower is better for the metrics it names so, RMSE and losses, say).
    A configured metric's direction is asked of the task of the runs that logged it."""
    if metric is None:
        metric = task_of(runs).ranking_metric
    if higher is None:
        logged = [r for r in runs if metric in r.metrics] or runs
        higher = task_of(logged).higher_is_better(metric)
    return metric, higher


def rank(
    runs: Sequence[RunRecord], metric: str, higher_is_better: bool
) -> tuple[list[RunRecord], list[RunRecord]]:
    """(runs with ``metric``, best first; runs without it)."""
    scored = [r for r in runs if metric in r.metrics and math.isfinite(r.metrics[metric])]
    missing = [r for r in runs if r not in scored]
    scored.sort(key=lambda r: r.metrics[metric], reverse=higher_is_better)
    return scored, missing


def varying_params(runs: Sequence[RunRecord]) -> list[str]:
    """Parameter keys whose value differs between runs (a key missing in a run counts as a value)."""
    keys = sorted({k for r in runs for k in r.params if not k.startswith(IGNORED_PARAM_PREFIXES)})
    return [k for k in keys if len({r.params.get(k, "—") for r in runs}) > 1]


def metric_columns(runs: Sequence[RunRecord], metric: str) -> list[str]:
    """The ranking metric first, then every other scalar metric the runs logged."""
    others = sorted({k for r in runs for k in r.metrics} - {metric, *CURVE_METRICS, "epoch"})
    return [metric, *others]


def leaderboard(
    ranked: Sequence[RunRecord],
    varying: Sequence[str],
    columns: Sequence[str],
    agreement: Mapping[str, float],
) -> list[dict[str, Any]]:
    """One row per ranked run, best first: its varying parameters, its metrics (NaN where it logged
    none) and its explanation's agreement with the best run's."""
    return [
        {
            "rank": i + 1,
            "name": r.name,
            "run_id": r.run_id,
            "params": {k: r.params.get(k, "—") for k in varying},
            "metrics": {m: r.metrics.get(m, math.nan) for m in columns},
            "agreement": agreement.get(r.run_id, math.nan),
        }
        for i, r in enumerate(ranked)
    ]


def verdict(
    ranked: Sequence[RunRecord],
    missing: Sequence[RunRecord],
    metric: str,
    higher: bool,
    varying: Sequence[str],
) -> list[str]:
    """The "at a glance" sentences: the best run, the spread, what the runner-up did differently."""
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


def filter_text(run_name_prefix: str | None, extra_filter: str | None) -> str:
    """Which runs were asked for, in words."""
    conditions = [f"name starts with '{run_name_prefix}'"] if run_name_prefix else []
    return " AND ".join([*conditions, *([extra_filter] if extra_filter else [])]) or "all runs"


def page_context(
    runs: Sequence[RunRecord],
    ranked: Sequence[RunRecord],
    missing: Sequence[RunRecord],
    metric: str,
    higher: bool,
    varying: Sequence[str],
    agreement: Mapping[str, float],
) -> dict[str, Any]:
    """What the page says of the runs (``runs``: all those asked for; ``ranked``, ``missing``: from
    ``rank``; ``agreement``: from ``agreement_with_best``): the leaderboard and the sentences."""
    columns = metric_columns(ranked, metric)
    return {
        "metric": metric,
        "higher_is_better": higher,
        "runs": list(runs),
        "verdict": verdict(ranked, missing, metric, higher, varying),
        "varying": list(varying),
        "metric_columns": columns,
        "leaderboard": leaderboard(ranked, varying, columns, agreement),
        "missing": [r.name for r in missing],
        "agreement": dict(agreement),
    }


def agreement_with_best(records: Mapping[str, Mapping[str, Any]], best: str) -> dict[str, float]:
    """``explanation_agreement`` of the runs' importance records (run id -> the explain stage's
    ``importance.json``); empty when the ``best`` run logged none."""
    if best not in records:
        return {}
    return explanation_agreement({k: np.asarray(v["importance"]) for k, v in records.items()}, best)


def explanation_agreement(importances: Mapping[str, np.ndarray], best: str) -> dict[str, float]:
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
