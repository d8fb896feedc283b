"""The trained network as an MLflow model (``mlflow.pytorch.log_model``, with a signature, an
input example and stated requirements).

``serialization_format`` "pickle" logs the ``MLP`` itself, glassnet's code beside it, so
``mlflow.pytorch.load_model`` returns it; "pt2" a ``torch.export`` graph, which loads without the
code but costs ~1.1 s more per train stage (torch.export). torch and MLflow are imported inside the
functions: the train stage's process-pool worker imports this module to run them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

PACKAGE = Path(__file__).resolve().parents[1]  # pipeline/: travels with a pickled model


def _import_mlflow_pytorch() -> None:
    """Import mlflow.pytorch, without Lightning where this process has not imported it.

    mlflow.pytorch imports Lightning (2.4 s of CPU) only to offer an autologging callback, and
    leaves the callback out when that import fails (a try/except ImportError at the end of
    mlflow/pytorch/__init__.py). In the train stage's pool worker, which never autologs, the
    import ran beside the first epochs and cost them time; a None in sys.modules makes it fail.
    """
    blocked = [name for name in ("pytorch_lightning", "lightning") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import mlflow.pytorch  # noqa: F401
    finally:
        for name in blocked:
            del sys.modules[name]


def requirements() -> list[str]:
    """The model's pip requirements: this environment's torch and numpy."""
    import numpy as np
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def warm_up() -> None:
    """Do ahead what ``log_saved`` would do the first time in this process, so that the train
    stage, which waits for the model's logging after its fit, does not wait for it: the train
    stage's worker runs this while the network trains. Measured there, the first ``log_saved``
    took ~0.5 s more than the next ones: MLflow imports mlflow.pyfunc (pydantic models) and GitPython
    lazily, pipeline.model.build imports Hydra, and the check that the stated requirements are
    installed maps every installed distribution's files to its modules once per process."""
    _import_mlflow_pytorch()
    import hydra.utils  # noqa: F401
    import mlflow.models
    import mlflow.pyfunc  # noqa: F401
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    from pipeline import model  # noqa: F401

    with contextlib.suppress(ImportError):  # GitPython refuses to import without a git binary
        import git  # noqa: F401
    warn_dependency_requirement_mismatches(requirements())


def log_model(
    uri: str, run_id: str, net: torch.nn.Module, example: np.ndarray, serialization_format: str = "pickle"
) -> str:
    """Log ``net`` to run ``run_id`` as an MLflow PyTorch model; return its URI."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    _import_mlflow_pytorch()
    with torch.inference_mode():
        output = net(torch.as_tensor(example)).numpy()
    mlflow.set_tracking_uri(uri)
    # Requirements are stated, not inferred: inference re-imports the model in a
    # subprocess and took 13 s of a 27 s train stage. The package's source travels
    # with the model so `mlflow.pytorch.load_model` works where glassnet is not installed.
    # mlflow.pytorch warns on every pickle-format model that unpickling can run code: the format is
    # chosen in the config (tracking.model_format, documented with its trade-off), not by accident.
    quiet = logging.getLogger("mlflow.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pytorch.log_model(
                net,
                name="model",
                signature=infer_signature(example, output),
                input_example=example,
                pip_requirements=requirements(),
                code_paths=[str(PACKAGE)],
                serialization_format=serialization_format,
            )
    finally:
        quiet.setLevel(level)
    return str(info.model_uri)


def log_saved(
    uri: str, run_id: str, model_file: Path, example: np.ndarray, serialization_format: str = "pickle"
) -> str:
    """``log_model`` of the network saved at ``model_file`` (by pipeline.model.save)."""
    from pipeline import model

    net = model.load(model_file)
    net.eval()
    return log_model(uri, run_id, net, example, serialization_format)
