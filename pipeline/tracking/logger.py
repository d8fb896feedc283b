"""The train stage's Lightning logger: the steps' metrics become ``runs.log_steps`` tasks of a
process pool (pipeline.parallel), not waited for; ``wait`` collects them at the end.

Lightning's MLflowLogger would import MLflow in the stage (~2 s with its store) and wait
~8 ms an epoch for the store; here the pool's worker, which made the run, does both. While the
worker is still busy (importing MLflow, creating the run, logging the last task) the steps that
arrive wait here and go as one task when it is free: the worker, niced and sharing the cores
with the fit, fell behind by one store transaction an epoch, which the stage then waited for.
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
        # they are gathered into one step's batch.
        self.step: int | None = None
        self.batch: dict[str, float] = {}
        self.stamp = 0
        # Whole steps (step, timestamp, metrics) not yet handed to the pool, and the metrics task
        # the worker has not finished.
        self.queued: list[tuple[int, int, dict[str, float]]] = []
        self.in_flight: Future[None] | None = None

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
        """Close the last step's batch; hand the queued steps to the pool if the worker is free."""
        batch, self.batch = self.batch, {}
        if batch:
            self.queued.append((self.step or 0, self.stamp, batch))
        if self.in_flight is None or self.in_flight.done():
            self.send()

    def send(self) -> None:
        """Hand every queued step to the pool as one task, without waiting."""
        if not self.queued:
            return
        try:
            task = self.pool.submit(runs.log_steps, self.uri, self.run_id, list(self.queued))
        except BrokenProcessPool as err:
            raise runs.TrackingError(
                f"The MLflow worker process stopped ({err}); its error is printed above. "
                "Check tracking.uri / MLFLOW_TRACKING_URI and the store, then rerun."
            ) from err
        self.queued.clear()
        self.in_flight = task
        self.pending.append(task)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning's end of fit: every step queued goes now. After a failed fit, best effort:
        the fit's own error is the one to raise."""
        if status == "success":
            self.flush()
            self.send()
            return
        with contextlib.suppress(runs.TrackingError):
            self.flush()
            self.send()

    def wait(self) -> None:
        """Wait until every metric is logged; raise the first logging error, with its traceback."""
        self.flush()
        self.send()
        for future in self.pending:
            future.result()
        self.pending.clear()
