"""A Lightning callback that records what training did, for tests that run the real CLI.

Added to a `python -m pipeline.stages.train` run through the config, like any user callback:

    +train.callbacks.probe._target_=tests.probes.TrainingProbe +train.callbacks.probe.path=probe.json

(the subprocess imports it with PYTHONPATH at the project root). When the fit ends it writes a
JSON file: training batches and optimizer steps seen, ``trainer.global_step``, the total gradient
norm before clipping (``on_before_optimizer_step``) and as the optimizer applied it (a torch
step post-hook: after Lightning clipped it), and the dtypes of the first Linear layer's outputs
while training (bfloat16 under ``precision=bf16-mixed``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn


def grad_norm(module: nn.Module) -> float:
    """The total L2 norm of the gradients, as Lightning's norm clipping measures it."""
    grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


class TrainingProbe(pl.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.batches = 0
        self.steps = 0
        self.norms_before: list[float] = []
        self.norms_applied: list[float] = []
        self.dtypes: set[str] = set()
        self.handles: list[Any] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        def applied(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            # After the update: the gradients the optimizer used (clipped), before the next zero_grad.
            self.steps += 1
            self.norms_applied.append(grad_norm(pl_module))

        def forward(layer: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if layer.training:
                self.dtypes.add(str(output.dtype))

        self.handles.append(trainer.optimizers[0].register_step_post_hook(applied))
        first = next(m for m in pl_module.modules() if isinstance(m, nn.Linear))
        self.handles.append(first.register_forward_hook(forward))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self.norms_before.append(grad_norm(pl_module))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches += 1

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self.handles:
            handle.remove()
        record = {
            "batches": self.batches,
            "steps": self.steps,
            "global_step": trainer.global_step,
            "epochs": trainer.current_epoch,
            "norms_before": self.norms_before,
            "norms_applied": self.norms_applied,
            "dtypes": sorted(self.dtypes),
        }
        self.path.write_text(json.dumps(record))
