"""The trained network as an MLflow model (``mlflow.pytorch.log_model``, with a signature, an
input example and stated requirements).

``serialization_format`` "pickle" logs the ``MLP`` itself, glassnet's code beside it, so
``mlflow.pytorch.load_model`` returns it; "pt2" a ``torch.export`` graph, which loads without the
code but costs a ``torch.export`` of the network per train stage.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow.models import infer_signature

from pipeline.nets import model

PACKAGE = Path(__file__).resolve().parents[1]  # pipeline/: travels with a pickled model


def requirements() -> list[str]:
    """The model's pip requirements: this environment's torch and numpy."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def log_model(
    uri: str, run_id: str, net: torch.nn.Module, example: np.ndarray, serialization_format: str = "pickle"
) -> str:
    """Log ``net`` to run ``run_id`` as an MLflow PyTorch model; return its URI."""
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
    """``log_model`` of the network saved at ``model_file`` (by pipeline.nets.model.save)."""
    net = model.load(model_file)
    net.eval()
    return log_model(uri, run_id, net, example, serialization_format)
