"""Reading runs back, for the comparison page (pipeline.tools.compare), and logging the page itself."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.tracking import store

COMPARISON_TAG = "glassnet.kind"


@dataclass(frozen=True)
class RunRecord:
    """What the comparison page needs of one run."""

    run_id: str
    name: str
    start_time: int  # ms since the epoch
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def search_runs(
    uri: str, experiment: str, run_name_prefix: str | None, extra_filter: str | None, max_runs: int
) -> list[RunRecord]:
    """Runs of ``experiment`` matching the filters, newest first; comparison runs excluded."""
    mlf = store.client(uri)
    found = mlf.get_experiment_by_name(experiment)
    if found is None:
        return []
    clauses = []
    if run_name_prefix:
        clauses.append(f"attributes.run_name LIKE '{run_name_prefix.replace(chr(39), '')}%'")
    if extra_filter:
        clauses.append(f"({extra_filter})" if " or " in extra_filter.lower() else extra_filter)
    runs = mlf.search_runs(
        [found.experiment_id],
        filter_string=" AND ".join(clauses),
        max_results=max_runs,
        order_by=["attributes.start_time DESC"],
    )
    return [
        RunRecord(
            run_id=r.info.run_id,
            name=r.info.run_name or r.info.run_id[:8],
            start_time=int(r.info.start_time or 0),
            status=r.info.status,
            params=dict(r.data.params),
            metrics=dict(r.data.metrics),
            tags=dict(r.data.tags),
        )
        for r in runs
        if r.data.tags.get(COMPARISON_TAG) != "comparison"
    ]


def metric_history(uri: str, run_id: str, key: str) -> list[float]:
    """Values of ``key`` in the order they were logged (one per epoch for epoch metrics)."""
    history = store.client(uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]


def download_artifact(uri: str, run_id: str, path: str, folder: Path) -> Path | None:
    """Fetch one artifact of a run into ``folder``; None when the run does not have it."""
    from mlflow.exceptions import MlflowException

    # MLflow draws a progress bar per download; one file each is not worth the noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlf = store.client(uri)
    parent = str(Path(path).parent)
    try:
        names = {a.path for a in mlf.list_artifacts(run_id, "" if parent == "." else parent)}
        if path not in names:
            return None
        return Path(mlf.download_artifacts(run_id, path, str(folder)))
    except (MlflowException, OSError):
        return None


def log_comparison(uri: str, experiment: str, page: Path, compared: list[str]) -> str:
    """A small run that holds the comparison page; returns its id."""
    mlf = store.client(uri)
    experiment_id = store.ensure_experiment(uri, experiment)
    run = mlf.create_run(
        experiment_id,
        run_name="comparison",
        tags={COMPARISON_TAG: "comparison", "compared_runs": ",".join(compared)[:5000]},
    )
    mlf.log_artifact(run.info.run_id, str(page), "compare")
    mlf.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)
