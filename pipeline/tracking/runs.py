"""One MLflow run per trained model: its identity, as ``run.json`` holds it, and its life (start
or resume, log params and metrics, finish, terminate).

Every operation takes the tracking URI and the run id (the run's identity as run.json holds it).
MLflow is imported inside the functions, as in ``store``: ``RunInfo`` serves stages that never
talk to MLflow.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import GlassnetError
from pipeline.tracking import store

log = logging.getLogger(__name__)


class TrackingError(GlassnetError):
    """The MLflow store could not be used."""


@dataclass(frozen=True)
class RunInfo:
    """Identity of the run a model belongs to; written to run.json by train."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str
    run_id: str
    model_uri: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**{key: str(data[key]) for key in cls.__dataclass_fields__})


def load_run(path: str | Path) -> RunInfo:
    """The MLflow run of the trained model, as the train stage recorded it."""
    from pipeline import io

    return RunInfo.from_dict(io.read_json(path, "train"))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values (MLflow params are strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def launch_rank() -> int:
    """This process's global rank as Lightning will see it, known before Lightning is imported.

    Lightning's launchers (DDP subprocesses, SLURM, jsrun) set one of these variables in every
    process but the first; the first has none until Lightning sets them. Only rank 0 tracks.
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


@dataclass(frozen=True)
class Started:
    """The run a train stage logs to, as ``start`` made or found it."""

    run_id: str
    experiment_id: str
    resumed: bool
    killed: str | None = None  # the stale run it marked KILLED


def start(
    uri: str,
    experiment: str,
    run_name: str | None,
    tags: dict[str, str],
    params: dict[str, Any],
    *,
    resume: str | None = None,
    stale: str | None = None,
) -> Started:
    """Resume run ``resume`` if the store has it, else create a run with ``tags`` and ``params``.

    ``stale``: the run of an earlier train stage that died without a word (SIGKILL, a lost
    machine), which nobody marked; if it is still RUNNING, it is marked KILLED. Both are logged
    as warnings, as is a run to resume that the store does not hold.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        experiment_id = store.ensure_experiment(uri, experiment)
        killed = stale if stale and stale != resume and end_if_running(uri, stale, "KILLED") else None
        if killed:
            log.warning(
                "MLflow run %s of an earlier train stage that stopped without a word (killed?) "
                "was still RUNNING: marked KILLED",
                killed,
            )
        if resume and run_exists(uri, resume):
            store.client(uri).update_run(resume, status="RUNNING")
            return Started(resume, experiment_id, resumed=True, killed=killed)
        run_id = str(store.client(uri).create_run(experiment_id, run_name=run_name, tags=tags).info.run_id)
        log_params(uri, run_id, params)
    except (MlflowException, SQLAlchemyError, OSError) as err:
        raise TrackingError(
            f"MLflow tracking failed: cannot log to the store {uri} ({type(err).__name__}: {err}). "
            "Check tracking.uri / MLFLOW_TRACKING_URI and the store, then rerun."
        ) from err
    if resume:
        log.warning("The interrupted run's MLflow run %s is not in %s: logging to a new run", resume, uri)
    return Started(run_id, experiment_id, resumed=False, killed=killed)


def run_exists(uri: str, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        store.client(uri).get_run(run_id)
    except MlflowException:
        return False
    return True


def log_params(uri: str, run_id: str, params: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Log the params the run does not hold yet. MLflow never changes a logged param: those it
    holds with another value are left and returned, as {key: (logged, new)}."""
    from mlflow.entities import Param

    # MLflow takes at most 100 params a request and 6000 characters a value.
    new = {key: str(value)[:6000] for key, value in params.items()}
    logged = store.client(uri).get_run(run_id).data.params
    changed = {
        key: (logged[key], value) for key, value in new.items() if key in logged and logged[key] != value
    }
    batch = [Param(key, value) for key, value in new.items() if key not in logged]
    for first in range(0, len(batch), 100):
        store.client(uri).log_batch(run_id, params=batch[first : first + 100])
    return changed


def log_metrics(
    uri: str, run_id: str, metrics: dict[str, float], step: int = 0, timestamp: int | None = None
) -> None:
    """Log many metrics in one request (``timestamp`` in ms: when they were measured)."""
    from mlflow.entities import Metric

    when = int(time.time() * 1000) if timestamp is None else timestamp
    batch = [Metric(key, float(value), when, step) for key, value in metrics.items()]
    store.client(uri).log_batch(run_id, metrics=batch)


def log_files(uri: str, run_id: str, files: Sequence[tuple[Path, str]]) -> None:
    """Log each (file, artifact folder) to the run."""
    for path, artifact_path in files:
        store.client(uri).log_artifact(run_id, str(path), artifact_path)


def finish(uri: str, run_id: str, metrics: dict[str, float], texts: dict[str, str]) -> None:
    """Log the final ``metrics`` and text files ({name: content}); mark the run FINISHED."""
    log_metrics(uri, run_id, metrics)
    for name, text in texts.items():
        store.client(uri).log_text(run_id, text, name)
    store.client(uri).set_terminated(run_id, "FINISHED")


def terminate(uri: str, run_id: str, status: str) -> None:
    """Mark the run ``status`` (FAILED, KILLED)."""
    store.client(uri).set_terminated(run_id, status)


def end_quietly(uri: str, run_id: str, status: str) -> None:
    """``terminate``, for a stage that is already failing: never raises (the store may be what
    failed), so the original error is the one reported."""
    try:
        terminate(uri, run_id, status)
    except Exception as err:  # noqa: BLE001 -- already failing; keep the original error
        log.warning("Could not mark MLflow run %s as %s: %s", run_id, status, err)


def end_if_running(uri: str, run_id: str, status: str = "KILLED") -> bool:
    """Mark run ``run_id`` ``status`` if the store holds it as RUNNING; whether it did."""
    if not run_exists(uri, run_id) or store.client(uri).get_run(run_id).info.status != "RUNNING":
        return False
    terminate(uri, run_id, status)
    return True
