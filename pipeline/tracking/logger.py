"""The train stage's Lightning logger: Lightning's own ``MLFlowLogger``, on the run the stage made."""

from __future__ import annotations

from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only


class RunLogger(MLFlowLogger):
    """``MLFlowLogger`` logging each step's metrics to run ``run_id`` of store ``uri``, synchronously:
    an error of the store stops the fit at the step it happened (MLflow's asynchronous logging
    only logs such an error and drops the metrics).

    The train stage, not the fit, ends the run: after the fit it still logs the model and the final
    metrics, so the run stays RUNNING until then (or is marked FAILED / KILLED by the stage)."""

    def __init__(self, uri: str, run_id: str) -> None:
        super().__init__(tracking_uri=uri, run_id=run_id)
        self.uri = uri

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Lightning's end of fit: the run goes on (see the class)."""
