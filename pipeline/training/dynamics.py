"""Training dynamics the seeds teach beside forward and backward propagation, for any network:
how large each layer's gradient was during training (``callbacks.GradientNorms`` records it), and
the loss along the straight line from the initial to the final weights (Goodfellow, Vinyals and
Saxe, "Qualitatively characterizing neural network optimization problems", 2015): a cheap
one-dimensional look at the loss surface the optimizer crossed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from pipeline import stats
from pipeline.nets import predict

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
    end = {key: value.detach().clone() for key, value in net.state_dict().items()}
    was_training = net.training
    found: dict[str, list[float]] = {name: [] for name in splits}
    targets = {name: torch.from_numpy(np.asarray(y)) for name, (_, y) in splits.items()}
    try:
        for alpha in alphas:
            net.load_state_dict(interpolate(start, end, float(alpha)))
            for name, (X, _) in splits.items():
                # The network's float32 outputs (float64 from predict, exactly), mean loss by batch.
                out = torch.from_numpy(predict.outputs(net, X, batch_size=batch_size)).float()
                y = targets[name]
                total = 0.0
                with torch.inference_mode():
                    for start_row in range(0, len(y), batch_size):
                        part = slice(start_row, start_row + batch_size)
                        total += float(criterion(out[part], y[part])) * len(y[part])
                found[name].append(total / max(1, len(y)))
    finally:
        net.load_state_dict(end)
        net.train(was_training)
    return found


def loss_line(
    net: nn.Module,
    initial: dict[str, torch.Tensor],
    arrays: dict[str, np.ndarray],
    shape: tuple[int, ...],
    seed: int,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, list[float]]:
    """The loss on the line from the ``initial`` to ``net``'s weights, on at most ``MAX_ROWS``
    seeded rows of the train and validation splits of ``arrays`` (flat rows, reshaped to
    ``shape``) each; ``criterion``: the loss trained on (``Learner.batch_loss``; None:
    cross-entropy). ``{"alpha": [...], "train": [...], "val": [...]}``."""
    splits = {}
    for split in ("train", "val"):
        y = arrays[f"y_{split}"]
        rows = stats.subsample(len(y), MAX_ROWS, seed)
        splits[split] = (np.asarray(arrays[f"X_{split}"][rows]).reshape(len(rows), *shape), y[rows])
    found = loss_along_line(net, initial, splits, criterion=criterion)
    return {"alpha": [float(a) for a in ALPHAS], **found}
