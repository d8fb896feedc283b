"""Lightning pieces for training: the LightningModule and whole-batch data loading."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset

if TYPE_CHECKING:
    from pipeline.tracking import TrackingWorker


class Block:
    """Up to ``chunk`` consecutive mini-batches of an in-memory dataset, as rows of ``X``/``y``.

    Iterating gathers one mini-batch at a time, so its rows are still in the CPU cache when
    the forward and backward passes read them; gathering a whole 16-batch block up front
    (12 MB at batch 256 on MNIST) measured 3-10% slower per epoch. Lightning moves a batch to
    the accelerator through ``to``: there the block is gathered once and copied once.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | slice, batch_size: int) -> None:
        self.X, self.y, self.rows, self.batch_size = X, y, rows, batch_size

    def __len__(self) -> int:
        """Rows in the block."""
        if isinstance(self.rows, slice):
            return len(range(*self.rows.indices(len(self.y))))
        return len(self.rows)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole block (views when its rows are contiguous)."""
        return self.X[self.rows], self.y[self.rows]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The mini-batches, in order."""
        if isinstance(self.rows, slice):
            start, stop, _ = self.rows.indices(len(self.y))
            for first in range(start, stop, self.batch_size):
                end = min(first + self.batch_size, stop)
                yield self.X[first:end], self.y[first:end]
            return
        for part in self.rows.split(self.batch_size):
            yield self.X[part], self.y[part]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Block:
        if torch.device(device) == self.X.device:
            return self
        X, y = self.tensors()
        moved = (X.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking))
        return Block(*moved, slice(0, len(y)), self.batch_size)


class TensorBatches(IterableDataset[Block]):
    """Yields Blocks of ``chunk`` mini-batches of ``batch_size`` rows of in-memory tensors.

    Fetching sample by sample and collating was 2x slower than a plain loop on these
    machines; a Block gathers each mini-batch with one indexing call. The mini-batches and
    their order do not depend on ``chunk``, only how many go through one Lightning step.
    """

    def __init__(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        chunk: int = 1,
    ) -> None:
        self.X, self.y, self.batch_size, self.shuffle, self.seed = X, y, batch_size, shuffle, seed
        self.block = batch_size * chunk
        # The order is a function of (seed, epoch) alone, so a run resumed from a checkpoint
        # sees the same batches as one that never stopped. EpochSeed sets the epoch.
        self.epoch = 0

    def __len__(self) -> int:
        _, world = _rank_and_world()
        return math.ceil(math.ceil(len(self.y) / world) / self.block)

    def __iter__(self) -> Iterator[Block]:
        rank, world = _rank_and_world()
        n = len(self.y)
        # Every rank draws the same permutation (same seed), then takes its own shard.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else None
        if world == 1:
            for start in range(0, n, self.block):
                # Unshuffled: contiguous slices, views with no copy at all.
                rows = (
                    slice(start, start + self.block) if order is None else order[start : start + self.block]
                )
                yield Block(self.X, self.y, rows, self.batch_size)
            return
        # Like DistributedSampler: pad by wrapping around so every rank runs the same number of
        # steps (a rank with fewer batches would leave the others waiting in all-reduce forever).
        order = order if order is not None else torch.arange(n)
        per_rank = math.ceil(n / world)
        padded = torch.cat([order, order[: per_rank * world - n]]) if per_rank * world > n else order
        shard = padded[rank::world]
        for start in range(0, len(shard), self.block):
            yield Block(self.X, self.y, shard[start : start + self.block], self.batch_size)


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def batches(
    X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0, chunk: int = 1
) -> DataLoader[Block]:
    # batch_size=None: the dataset already yields batches, the loader must not collate again.
    return DataLoader(TensorBatches(X, y, batch_size, shuffle, seed, chunk), batch_size=None)


class Classifier(pl.LightningModule):
    """Cross-entropy training of ``net``; logs loss and accuracy per epoch.

    Lightning spends about 0.5 ms of hook dispatch, closures and bookkeeping per training step
    on these machines: 30-50% of a step of this small MLP at batch 256-64. So one Lightning
    step takes a block of ``chunk`` mini-batches (see TensorBatches) and runs their
    forward/backward/update itself, through Lightning's manual optimization: ``manual_backward``
    and the wrapped optimizer keep precision plugins, DDP gradient sync and ``global_step``
    (one per mini-batch) working, while the fixed per-step cost is paid once per block.
    The mini-batches, their order and the updates are exactly those of one batch per step.

    Per-step ``self.log`` calls also cost tens of microseconds each; instead each block adds
    its summed loss, correct count and sample count to a 3-element tensor (no host sync), and
    the epoch's means are logged once, after summing across DDP ranks.
    """

    def __init__(
        self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer], batch_size: int
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.batch_size = batch_size
        self.automatic_optimization = False
        self._direct = False  # set by on_fit_start
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` around every hook of every callback (about 40 times
        # a step); nn.Module.__setattr__'s parameter/module/buffer checks made that ~10% of a
        # batch-64 step. A string or None is a plain attribute, so store it directly.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _add(self, stage: str, loss_sum: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        sums = self._sums.get(stage)
        if sums is None:  # float32: float64 is missing on some accelerators (MPS)
            sums = self._sums[stage] = torch.zeros(3, device=loss_sum.device)
        sums[0] += loss_sum  # loss summed over samples: the epoch mean is weighted by batch size
        sums[1] += correct
        sums[2] += count

    def log_epoch(self, stage: str) -> None:
        """Log the epoch's ``<stage>_loss`` and ``<stage>_acc`` (once: later calls do nothing)."""
        sums = self._sums.pop(stage, None)
        if sums is None:
            return
        # Sum over DDP ranks (a no-op on one device), then the means are the global ones.
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        count = sums[2].clamp(min=1)
        for name, value in (("loss", sums[0] / count), ("acc", sums[1] / count)):
            self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True, prog_bar=True)

    def on_fit_start(self) -> None:
        from pytorch_lightning.plugins.precision import Precision
        from pytorch_lightning.strategies import SingleDeviceStrategy

        # On one device in full precision, manual_backward is exactly loss.backward() and the
        # wrapped optimizer's step is the optimizer's step, each plus a dispatch of a hook
        # (on_before_backward, on_after_backward, on_before_optimizer_step) over every callback:
        # ~0.15 ms per mini-batch here, 8% of a batch-256 step. No glassnet callback uses those
        # hooks, so this path calls torch directly and only keeps Lightning's step counting.
        # Mixed precision (loss scaling) and DDP (gradient sync) need Lightning's calls.
        optimizer = self.optimizers()
        self._direct = (
            type(self.trainer.strategy) is SingleDeviceStrategy
            and type(self.trainer.precision_plugin) is Precision
            and hasattr(optimizer, "_on_before_step")
            and hasattr(optimizer, "_on_after_step")
        )

    def _update(self, optimizer: LightningOptimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        if self._direct:
            loss.backward()
            optimizer._on_before_step()  # counts global_step, as LightningOptimizer.step does
            optimizer.optimizer.step()
            optimizer._on_after_step()
        else:
            self.manual_backward(loss)
            optimizer.step()

    def training_step(self, batch: Block, batch_idx: int) -> None:
        optimizer = self.optimizers()
        assert isinstance(optimizer, LightningOptimizer)
        losses, logits, labels = [], [], []
        for xb, yb in batch:
            out = self.net(xb)
            loss = F.cross_entropy(out, yb)
            self._update(optimizer, loss)
            losses.append(loss.detach())
            logits.append(out.detach())
            labels.append(yb)
        # Metrics once per block: no extra tensor ops per mini-batch.
        sizes = torch.tensor([len(b) for b in labels], dtype=torch.float32, device=labels[0].device)
        correct = (torch.cat(logits).argmax(dim=1) == torch.cat(labels)).sum()
        self._add("train", torch.dot(torch.stack(losses).float(), sizes), correct, len(batch))

    def validation_step(self, batch: Block, batch_idx: int) -> None:
        # No update in validation, so the whole block goes through in one forward pass.
        x, y = batch.tensors()
        logits = self.net(x)
        loss_sum = F.cross_entropy(logits, y, reduction="sum")
        self._add("val", loss_sum, (logits.argmax(dim=1) == y).sum(), len(y))

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._sums.pop("val", None)  # the sanity check's few batches are not an epoch
            return
        self.log_epoch("val")
        # Validation runs once the epoch's training is done, so its metrics are complete too:
        # logging them now makes one MLflow request per epoch instead of two (~10 ms each).
        self.log_epoch("train")

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


def safe_checkpoint(**kwargs: Any) -> pl.Callback:
    """Lightning's ModelCheckpoint whose saves cannot be cut short by SIGTERM/SIGINT.

    A stop signal arriving while a checkpoint is written waits until the file is complete
    (pipeline.io.uninterrupted), so `train.resume=true` never meets a half-written checkpoint.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint

    from pipeline import io

    class _SafeCheckpoint(ModelCheckpoint):
        def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
            with io.uninterrupted():
                super()._save_checkpoint(trainer, filepath)

    return _SafeCheckpoint(**kwargs)


class EpochSeed(pl.Callback):
    """Seeds each epoch from (seed, epoch): the batch order and the dropout masks of epoch k are
    the same whether the run went straight through or was resumed from a checkpoint."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        loader = trainer.train_dataloader
        if isinstance(getattr(loader, "dataset", None), TensorBatches):
            loader.dataset.epoch = epoch  # type: ignore[union-attr]
        torch.manual_seed(self.seed * 100_003 + epoch)


class History(pl.Callback):
    """Collects per-epoch metrics for the history file and the training-curve plot.

    Lightning publishes an epoch's aggregated train metrics only after the
    ``on_train_epoch_end`` hooks, so they are read when the next epoch starts
    (or the fit ends); validation metrics are read at the end of validation.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    # Saved in checkpoints, so a resumed run keeps the epochs before the interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Callbacks' hooks run before the module's: have it log the epoch's val metrics now.
        if isinstance(pl_module, Classifier):
            pl_module.log_epoch("val")
        row = {"epoch": float(trainer.current_epoch)}
        row.update(_pick(trainer, ("val_loss", "val_acc")))
        self.rows.append(row)

    def _fill_train(self, trainer: pl.Trainer) -> None:
        if self.rows and "train_loss" not in self.rows[-1]:
            self.rows[-1].update(_pick(trainer, ("train_loss", "train_acc")))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fill_train(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fill_train(trainer)


def _pick(trainer: pl.Trainer, keys: tuple[str, ...]) -> dict[str, float]:
    metrics = trainer.callback_metrics
    return {key: float(metrics[key]) for key in keys if key in metrics}


class WeightHistory(pl.Callback):
    """Quantiles of each Linear layer's weights and biases before training (epoch 0)
    and after every training epoch (epoch k = after k epochs), to show how the
    weight distributions moved. Cheap: one quantile pass per layer per epoch."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.layers: dict[str, dict[str, Any]] = {}

    def _record(self, pl_module: pl.LightningModule, epoch: int) -> None:
        from pipeline import stats

        if self.epochs and self.epochs[-1] == epoch:
            return  # a resumed or repeated hook must not record an epoch twice
        self.epochs.append(epoch)
        # Names as in the saved MLP's state dict ("net.0"), not the LightningModule's.
        for name, layer in getattr(pl_module, "net", pl_module).named_modules():
            if not isinstance(layer, nn.Linear):
                continue
            entry = self.layers.setdefault(
                name, {"shape": list(layer.weight.shape), "weight": [], "bias": [], "weight_std": []}
            )
            weight = layer.weight.detach().cpu().numpy()
            entry["weight"].append(stats.quantiles(weight))
            entry["weight_std"].append(float(weight.std()))
            bias = layer.bias.detach().cpu().numpy() if layer.bias is not None else weight[:0]
            entry["bias"].append(stats.quantiles(bias) if bias.size else [])

    # Saved in checkpoints, so a resumed run keeps the epochs before the interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs), "layers": self.layers}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs, self.layers = list(state_dict["epochs"]), state_dict["layers"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.epochs:  # a resumed run restored its history, initial weights included
            self._record(pl_module, 0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(pl_module, trainer.current_epoch + 1)

    def to_dict(self) -> dict[str, Any]:
        from pipeline import stats

        return {"quantiles": list(stats.QUANTILES), "epochs": self.epochs, "layers": self.layers}


class WorkerLogger(Logger):
    """Lightning's logger interface over ``tracking.TrackingWorker``: each epoch's metrics go to
    the MLflow helper process without waiting for it (Lightning's MLFlowLogger imported MLflow
    here and waited ~8 ms an epoch for the store)."""

    def __init__(self, worker: TrackingWorker) -> None:
        super().__init__()
        self.worker = worker

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.worker.run_id

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the train stage sends the whole config when it starts the worker

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.worker.log_metrics(metrics, step or 0)
