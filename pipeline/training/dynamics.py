"""Training dynamics the seeds teach beside forward and backward propagation, for any network:
how large each layer's gradient was during training (``lit.GradientNorms`` records it), and the
loss along the straight line from the initial to the final weights (Goodfellow, Vinyals and Saxe,
"Qualitatively characterizing neural network optimization problems", 2015): a cheap
one-dimensional look at the loss surface the optimizer crossed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ALPHAS = np.linspace(-0.25, 1.25, 31)  # 0: the initial weights, 1: the weights kept
MAX_ROWS = 2000  # rows per split the line is measured on (seeded): enough for a smooth curve


def interpolate(
    start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * start + alpha * end for every floating-point entry of a state dict; the
    others (BatchNorm's step counter) as in ``end``."""
    return {
        key: torch.lerp(start[key].to(value), value, alpha) if value.is_floating_point() else value
        for key, value in end.items()
    }


def loss_along_line(
    net: nn.Module,
    start: dict[str, torch.Tensor],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    alphas: np.ndarray = ALPHAS,
    batch_size: int = 1024,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, list[float]]:
    """Mean loss of ``net`` (eval mode) on each split's (X shaped for the network, y) at weights
    ``interpolate(start, net's own, alpha)`` for each alpha; ``net`` ends as it began.
    ``criterion(output, y)``: the batch's mean loss, the one trained on (default cross-entropy)."""
    criterion = criterion or nn.functional.cross_entropy
    device = next(net.parameters()).device
    end = {key: value.detach().clone() for key, value in net.state_dict().items()}
    was_training = net.training
    net.eval()
    found: dict[str, list[float]] = {name: [] for name in splits}
    tensors = {
        name: (torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), torch.from_numpy(np.asarray(y)))
        for name, (X, y) in splits.items()
    }
    try:
        with torch.inference_mode():
            for alpha in alphas:
                net.load_state_dict(interpolate(start, end, float(alpha)))
                for name, (X, y) in tensors.items():
                    total = 0.0
                    for i in range(0, len(y), batch_size):
                        logits = net(X[i : i + batch_size].to(device)).float()
                        target = y[i : i + batch_size].to(device)
                        total += float(criterion(logits, target)) * len(target)
                    found[name].append(total / max(1, len(y)))
    finally:
        net.load_state_dict(end)
        net.train(was_training)
    return found
