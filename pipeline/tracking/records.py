"""What evaluate, explain and visualize hand to MLflow, written down without importing it.

Importing MLflow and opening its store costs ~2 s per process, which these stages paid just to
log a few numbers and figures. Each writes a small JSON record beside its outputs instead (the
run it belongs to, prefixed metrics, figure files) and the publish stage logs them all, and the
report, in one process.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline import io
from pipeline.tracking.runs import RunInfo


def write(
    path: Path, run: RunInfo, metrics: dict[str, float], artifacts: list[Path], artifact_path: str
) -> None:
    """Write what a stage gives to MLflow: its metrics (finite ones) and files for ``artifact_path``."""
    io.write_json(
        path,
        {
            "run_id": run.run_id,
            "artifact_path": artifact_path,
            "metrics": {key: float(value) for key, value in metrics.items() if math.isfinite(value)},
            "artifacts": [str(artifact) for artifact in artifacts],
        },
    )
