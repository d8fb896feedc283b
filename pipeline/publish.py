"""Stage 6: publish the run's evaluation, explanation, visualization and report to MLflow.

Train logs to MLflow as it trains (parameters, per-epoch curves, the model). The later stages
only write down what they have for MLflow (``tracking.record``: prefixed metrics and figure
files, beside their outputs), because importing MLflow and opening its store cost each of them
~2 s; this stage logs all of it, and the report, in one process.

    python -m pipeline.publish      # after evaluate / explain / visualize / report
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import io, layout, tracking
from pipeline.config import Config
from pipeline.errors import MissingInputError

log = logging.getLogger(__name__)

STAGES = ("evaluate", "explain", "visualize")


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


def run(cfg: Config) -> dict[str, Any]:
    run_info = tracking.load_run(layout.run_file(cfg))
    records = {}
    for stage in STAGES:
        path = layout.mlflow_record(getattr(cfg.paths, stage))
        if path.exists():
            records[stage] = io.read_json(path, stage)
        else:
            log.warning("Nothing to publish from %s: %s does not exist (run that stage first)", stage, path)
    metrics, artifacts = collect(records, run_info.run_id)
    report = Path(cfg.paths.report)
    if report.exists():
        artifacts.append((report, "report"))
    else:
        log.warning("No report to publish: %s does not exist (run the 'report' stage first)", report)
    missing = [str(path) for path, _ in artifacts if not path.is_file()]
    if missing:
        raise MissingInputError(
            f"Cannot publish to MLflow: {', '.join(missing)} listed by a stage but missing; "
            "rerun the stages that write them (`dvc repro`)."
        )
    # The run's server, when it has one, must answer now (fail in seconds, not minutes of retries).
    tracking.prepare_uri(run_info.tracking_uri, fallback_to_local=False)
    if not tracking.run_exists(run_info.tracking_uri, run_info.run_id):
        raise MissingInputError(
            f"MLflow run {run_info.run_id} (from {layout.run_file(cfg)}) is not in the store "
            f"{run_info.tracking_uri}: retrain to make a new run (`dvc repro --force train`)."
        )
    tracking.publish(run_info, metrics, artifacts)
    summary = {
        "run_id": run_info.run_id,
        "tracking_uri": run_info.tracking_uri,
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
