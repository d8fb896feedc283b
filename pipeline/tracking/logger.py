"""The train stage's Lightning logger: each step's metrics become a ``runs.log_metrics`` task of a
process pool (pipeline.parallel), not waited for; ``wait`` collects them at the end.

Lightning's MLFlowLogger would import MLflow in the stage (~2 s with its store) and wait
~8 ms an epoch for the store; here the pool's worker, which made the run, does both.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from pipeline.tracking import runs


class PoolLogger(Logger):
    """Logs metrics to MLflow run ``run_id`` of store ``uri`` through ``pool``, rank 0 only. Like
    Lightning's MLFlowLogger it names its run and experiment; the stage submits its other MLflow
    work (the model, the end of the run) to the same pool, which runs tasks in order."""

    def __init__(self, pool: Executor, uri: str, run_id: str = "", experiment_id: str = "") -> None:
        super().__init__()
        # The run may be attached later: the train stage builds its Trainer (with this logger)
        # and checks it before it opens the run.
        self.pool, self.uri, self.run_id, self.experiment_id = pool, uri, run_id, experiment_id
        self.pending: list[Future[None]] = []
        # Lightning logs an epoch in two calls of one step (validation, then training metrics):
        # they go to the worker as one task, one store transaction (each took CPU from the fit).
        self.step: int | None = None
        self.batch: dict[str, float] = {}
        self.stamp = 0

    def attach(self, run_id: str, experiment_id: str) -> None:
        """Log to run ``run_id`` of experiment ``experiment_id`` (before the fit starts)."""
        self.run_id, self.experiment_id = run_id, experiment_id

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the train stage logs its config sections when it creates the run

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if step != self.step:
            self.flush()
        self.step, self.stamp = step, int(time.time() * 1000)  # when measured, not when logged
        self.batch.update({key: float(value) for key, value in metrics.items()})

    def flush(self) -> None:
        """Hand the metrics of the last step to the pool, without waiting."""
        batch, self.batch = self.batch, {}
        if not batch:
            return
        try:
            task = self.pool.submit(
                runs.log_metrics, self.uri, self.run_id, batch, self.step or 0, self.stamp
            )
        except BrokenProcessPool as err:
            raise runs.TrackingError(
                f"The MLflow worker process stopped ({err}); its error is printed above. "
                "Check tracking.uri / MLFLOW_TRACKING_URI and the store, then rerun."
            ) from err
        self.pending.append(task)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning's end of fit: the last epoch goes now. After a failed fit, best effort: the
        fit's own error is the one to raise."""
        if status == "success":
            self.flush()
            return
        with contextlib.suppress(runs.TrackingError):
            self.flush()

    def wait(self) -> None:
        """Wait until every metric is logged; raise the first logging error, with its traceback."""
        self.flush()
        for future in self.pending:
            future.result()
        self.pending.clear()
