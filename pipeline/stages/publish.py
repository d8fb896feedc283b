"""Stage 6: publish the run's evaluation, explanation, visualization and report to MLflow.

Train logs to MLflow as it trains (its config sections as parameters, per-epoch curves, the
model). The later stages only write down what they have for MLflow (``tracking.records``:
prefixed metrics and figure files, beside their outputs), because importing MLflow and opening
its store cost each of them ~2 s; this stage logs all of it, their config sections as
parameters, and the report, in one process.

    python -m pipeline publish      # after evaluate / explain / visualize / report
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import io, layout
from pipeline.config import Config, plain
from pipeline.errors import MissingInputError
from pipeline.plots.figures import STAGES
from pipeline.tracking import location, runs

log = logging.getLogger(__name__)


def collect(
    records: dict[str, dict[str, Any]], run_id: str
) -> tuple[dict[str, float], list[tuple[Path, str]]]:
    """Core: the metrics and (file, artifact folder) pairs of the stage records made for ``run_id``.

    A record made for another run (a stage not rerun since the model was retrained) is left
    out with a warning: its numbers describe a different model.
    """
    metrics: dict[str, float] = {}
    artifacts: list[tuple[Path, str]] = []
    for stage, rec in records.items():
        if rec["run_id"] != run_id:
            log.warning(
                "Not publishing %s: its outputs belong to MLflow run %s, not %s (rerun the %r stage)",
                stage,
                rec["run_id"],
                run_id,
                stage,
            )
            continue
        metrics.update({key: float(value) for key, value in rec["metrics"].items()})
        artifacts.extend((Path(path), rec["artifact_path"]) for path in rec["artifacts"])
    return metrics, artifacts


def stage_params(cfg: Config) -> dict[str, Any]:
    """The params of the stages after train (train logs its own sections), flattened for MLflow."""
    return runs.flatten({stage: plain(getattr(cfg, stage)) for stage in STAGES})


def read_records(cfg: Config) -> dict[str, dict[str, Any]]:
    """The MLflow records the stages after train wrote (``tracking.records``), by stage; a stage
    that has not run is left out with a warning."""
    found = {}
    for stage in STAGES:
        path = layout.mlflow_record(getattr(cfg.paths, stage))
        if path.exists():
            found[stage] = io.read_json(path, stage)
        else:
            log.warning("Nothing to publish from %s: %s does not exist (run that stage first)", stage, path)
    return found


def with_report(cfg: Config, artifacts: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """``artifacts`` and the report, when it has been written; every file must exist."""
    report = Path(cfg.paths.report)
    if report.exists():
        artifacts = [*artifacts, (report, "report")]
    else:
        log.warning("No report to publish: %s does not exist (run the 'report' stage first)", report)
    missing = [str(path) for path, _ in artifacts if not path.is_file()]
    if missing:
        raise MissingInputError(
            f"Cannot publish to MLflow: {', '.join(missing)} listed by a stage but missing; "
            "rerun the stages that write them (`dvc repro`)."
        )
    return artifacts


def check_run(cfg: Config, run_info: runs.RunInfo) -> None:
    """The run's server, when it has one, must answer now (fail in seconds, not minutes of
    retries), and hold the run."""
    location.prepare_uri(run_info.tracking_uri, fallback_to_local=False)
    if not runs.run_exists(run_info.tracking_uri, run_info.run_id):
        raise MissingInputError(
            f"MLflow run {run_info.run_id} (from {layout.run_file(cfg)}) is not in the store "
            f"{run_info.tracking_uri}: retrain to make a new run (`dvc repro --force train`)."
        )


def log_params(run_info: runs.RunInfo, params: dict[str, Any]) -> None:
    """Log ``params``; one the run already holds with another value is kept, with a warning."""
    for key, (logged, now) in runs.log_params(run_info.tracking_uri, run_info.run_id, params).items():
        log.warning(
            "MLflow run %s keeps %s=%s (MLflow never changes a param), though these outputs used %s: "
            "retrain (`dvc repro --force train`) for a run that records it",
            run_info.run_id,
            key,
            logged,
            now,
        )


def run(cfg: Config) -> dict[str, Any]:
    run_info = runs.load_run(layout.run_file(cfg))
    metrics, artifacts = collect(read_records(cfg), run_info.run_id)
    artifacts = with_report(cfg, artifacts)
    check_run(cfg, run_info)

    params = stage_params(cfg)
    log_params(run_info, params)
    if metrics:
        runs.log_metrics(run_info.tracking_uri, run_info.run_id, metrics)
    runs.log_files(run_info.tracking_uri, run_info.run_id, artifacts)

    summary = {
        "run_id": run_info.run_id,
        "tracking_uri": run_info.tracking_uri,
        "params": sorted(params),
        "metrics": sorted(metrics),
        "artifacts": sorted(f"{folder}/{path.name}" for path, folder in artifacts),
    }
    io.write_json(cfg.paths.published, summary)
    log.info(
        "Published %d metrics and %d files to MLflow run %s (%s)",
        len(metrics),
        len(artifacts),
        run_info.run_id,
        run_info.tracking_uri,
    )
    return summary


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
