"""The one batched forward pass: a network's outputs for rows of data, in eval mode, without autograd,
on the device the network's weights are on; every stage that predicts goes through ``outputs``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

BATCH = 4096


def device_of(net: nn.Module) -> torch.device:
    """Where the network's weights are (CPU for a network without any)."""
    return next((p.device for p in net.parameters()), torch.device("cpu"))


def outputs(
    net: nn.Module,
    X: np.ndarray,
    *,
    batch_size: int = BATCH,
    then: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """float64 outputs (rows, outputs) of ``net`` for the rows of ``X``, in blocks of ``batch_size``
    (a convolution's output for 10,000 MNIST images is 0.5 GB a layer); ``then`` is applied to each
    block's outputs on the device (e.g. a softmax)."""
    net.eval()
    device = device_of(net)
    rows = np.ascontiguousarray(X, dtype=np.float32)
    parts = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            out = net(torch.from_numpy(rows[start : start + batch_size]).to(device))
            parts.append((then(out) if then is not None else out).cpu())
    if not parts:
        return np.zeros((0, 0))
    return torch.cat(parts).numpy().astype(np.float64)


def predict_proba(net: nn.Module, X: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Class probabilities (rows, classes): the softmax of the network's logits."""
    return outputs(net, X, batch_size=batch_size, then=lambda logits: torch.softmax(logits, dim=1))


def predict_values(net: nn.Module, X: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """A regression network's predictions (rows,), in the target's units (train folded the target's
    scaling into the network)."""
    return outputs(net, X, batch_size=batch_size).reshape(-1)


def logits_fn(net: nn.Module, batch_size: int = 8192) -> Callable[[np.ndarray], np.ndarray]:
    """The network as a numpy function (rows, features) -> float64 outputs (rows, outputs), for
    model-agnostic explainers and the removal curves."""

    def predict(X: np.ndarray) -> np.ndarray:
        return outputs(net, X, batch_size=batch_size)

    return predict
