"""Training loop: glassnet's fit against a bare Lightning fit of the same network, and a plain
PyTorch loop for information, side by side in the same run.

    python -m benchmarks.train_loop                 # 60,000 x 784, batch 256 and 64, 3 mirrored pairs
    python -m benchmarks.train_loop --quick         # smoke test: tiny data, one pair
    python -m benchmarks.train_loop --threads 1     # one torch thread (steadier on a busy machine)
    python -m benchmarks.train_loop --model cnn     # the default CNN on 1x28x28 images, batch 128

All sides train the same network (``--model mlp``: 784-128-ReLU-Dropout-10; ``--model cnn``: the
default ``model=cnn``, conv 16, 32 (3x3, max pool 2) -> 64 -> 10, on images shaped 1x28x28 as the
train stage hands them to it), with Adam as conf/optim/adam.yaml, on the same in-memory synthetic
MNIST-shaped data (60,000 train + 10,000 validation rows), with the same batch size and torch
thread count, for the same number of epochs, and validate every epoch:

- plain: a hand-written loop (randperm indexing, forward/backward/step, a no-grad validation pass
  that computes loss and accuracy);
- lightning: the least a Lightning user writes (a LightningModule whose steps return the
  cross-entropy and log the validation loss and accuracy per epoch, the same in-memory
  DataLoader, a Trainer with no logger, checkpointing, callbacks or progress bar): what
  Lightning's automatic optimization costs by itself, so the table separates it from glassnet's;
- glassnet: ``pipeline.training.fit.fit`` (the Learner with Lightning's automatic optimization, the
  in-memory DataModule) under a Trainer built from the composed config by the train stage's own
  ``build.build_trainer``: its callbacks (EpochSeed, History, WeightHistory, GradientNorms,
  ModelCheckpoint with the atomic checkpoint plugin, EarlyStopping), the progress bar off as under
  DVC, and no logger (MLflow's per-epoch logging is not what this times).

Each repetition runs every side for ``--epochs`` epochs (default 5 for the MLP, 1 for the CNN,
whose epoch is long enough to hide a fit's fixed costs); glassnet's time includes everything
``fit`` does: sanity check, checkpoints, per-epoch logging. Repetitions come in mirrored pairs:
plain, Lightning, glassnet, then glassnet, Lightning, plain. These machines slow down by 5-10%
over minutes of sustained load, so in a single order the side that runs last is always the
slower; within a mirrored pair every side's two runs sum to the same mean position, so a steady
drift cancels in the pair's ratio (sum of one side's two times / the other side's two). With
alternate orders and an odd count, the side run last more often was measured 5-10% high.
Reported per epoch: median and min..max over repetitions; glassnet / bare Lightning, the figure
held to its ceiling (``CEILING``: glassnet's own machinery may cost at most 5% over what Lightning
costs by itself), as the median and min..max of the pairs' ratios; bare Lightning / plain and
glassnet / plain the same way, for information; and GFLOP/s (6 x parameters x training samples per
epoch / epoch time).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.common import Stat, loadavg, log, parser, setup_logging, table

BATCH_SIZES = {"mlp": (256, 64), "cnn": (128,)}
CEILING = 1.05  # glassnet / bare Lightning, median of the mirrored pairs


def synthetic(n_train: int, n_val: int, features: int = 784, classes: int = 10) -> dict[str, np.ndarray]:
    """MNIST-shaped data with a learnable signal (class means differ), float32 as prepare writes it."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (classes, features)).astype(np.float32)
    out = {}
    for split, n in (("train", n_train), ("val", n_val)):
        y = rng.integers(0, classes, n)
        out[f"X_{split}"] = (centers[y] + rng.normal(0, 2, (n, features))).astype(np.float32)
        out[f"y_{split}"] = y.astype(np.int64)
    return out


def pair_ratios(side: list[float], reference: list[float]) -> list[float]:
    """Per mirrored pair of repetitions (2k, 2k+1): the side's summed time over the reference's."""
    return [sum(side[i : i + 2]) / sum(reference[i : i + 2]) for i in range(0, len(side) - 1, 2)]


def ratio(values: list[float]) -> str:
    """Median and min..max of mirrored pairs' ratios."""
    found = Stat(values)
    return f"{found.median:.2f}x [{found.lo:.2f}..{found.hi:.2f}]"


def plain_fit(net: torch.nn.Module, arrays: dict[str, np.ndarray], batch_size: int, epochs: int) -> None:
    X, y = torch.from_numpy(arrays["X_train"]), torch.from_numpy(arrays["y_train"])
    Xv, yv = torch.from_numpy(arrays["X_val"]), torch.from_numpy(arrays["y_val"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(y)).split(batch_size):
            loss = F.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        total, correct = torch.zeros(()), torch.zeros(())
        with torch.no_grad():
            for start in range(0, len(yv), batch_size):
                logits = net(Xv[start : start + batch_size])
                total += F.cross_entropy(logits, yv[start : start + batch_size], reduction="sum")
                correct += (logits.argmax(1) == yv[start : start + batch_size]).sum()
        float(total), float(correct)  # the epoch's metrics, as a user would read them


def lightning_fit(net: torch.nn.Module, arrays: dict[str, np.ndarray], batch_size: int, epochs: int) -> None:
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pipeline.training.learner import InMemoryRows, whole_batch

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    def loader(split: str, shuffle: bool) -> DataLoader[Any]:
        data = InMemoryRows(torch.from_numpy(arrays[f"X_{split}"]), torch.from_numpy(arrays[f"y_{split}"]))
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=whole_batch)

    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Bare(), loader("train", True), loader("val", False))


def glassnet_trainer(folder: Path, epochs: int) -> Any:
    """A Trainer as the train stage builds it (``pipeline.training.build.build_trainer``: config,
    callbacks, checkpoints into ``folder``), without a logger."""
    from hydra import compose, initialize_config_dir

    from benchmarks.common import ROOT
    from pipeline.config import to_config
    from pipeline.training.build import build_trainer

    overrides = [
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.enable_progress_bar=false",
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides))
    trainer, _ = build_trainer(cfg, False, folder / "ckpt")
    return trainer


def glassnet_fit(net: torch.nn.Module, arrays: dict[str, np.ndarray], batch_size: int, trainer: Any) -> None:
    from pipeline.training.fit import fit

    fit(net, partial(torch.optim.Adam, lr=1e-3), arrays, trainer, batch_size, seed=0)


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--samples", type=int, default=0, help="training rows (default 60,000)")
    cli.add_argument("--epochs", type=int, default=0, help="epochs per fit (default 5 mlp, 1 cnn)")
    cli.add_argument("--model", choices=tuple(BATCH_SIZES), default="mlp")
    cli.set_defaults(repeats=0)
    args = cli.parse_args()
    # Mirrored pairs (see above): an odd count is rounded up.
    args.repeats = 2 * math.ceil((args.repeats or 6) / 2)
    epochs = args.epochs or (1 if args.model == "cnn" else 5)
    setup_logging()
    import pytorch_lightning  # noqa: F401  -- it sets its logger's level when imported: quiet it after

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    from pipeline.nets.model import CNN, MLP, n_parameters

    n_train, n_val, epochs, repeats = (
        (2_000, 500, 1, 2) if args.quick else (60_000, 10_000, epochs, args.repeats)
    )
    if args.samples:
        n_train, n_val = args.samples, args.samples // 6
    arrays = synthetic(n_train, n_val)
    torch.manual_seed(0)
    template: torch.nn.Module
    if args.model == "cnn":
        # Images keep their shape to the network, as the train stage passes them.
        arrays = {k: v.reshape(len(v), 1, 28, 28) if k.startswith("X_") else v for k, v in arrays.items()}
        template = CNN((1, 28, 28), 10)
        # Multiply-adds of one forward pass: each conv output value costs in_channels x k x k.
        conv = 28 * 28 * 16 * 9 + 14 * 14 * 32 * 16 * 9
        flop_per_sample = 6 * (conv + n_parameters(template))
    else:
        template = MLP(784, 10, [128], "relu", 0.2)
        flop_per_sample = 6 * n_parameters(template)
    params = n_parameters(template)
    gflop = flop_per_sample * n_train / 1e9
    log.info(
        "train_loop: %d x 784 train + %d val, %s %d params, %d epochs per fit, torch threads %d, "
        "%d repetitions, load %s",
        n_train,
        n_val,
        args.model.upper(),
        params,
        epochs,
        torch.get_num_threads(),
        repeats,
        loadavg(),
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: first calls pay for lazy imports and allocator growth on both sides.
        warm = {k: v[:5_000] for k, v in arrays.items()} if args.model == "cnn" else arrays
        glassnet_fit(copy.deepcopy(template), warm, 256, glassnet_trainer(Path(tmp) / "w", 1))
        plain_fit(copy.deepcopy(template), warm, 256, 1)
        lightning_fit(copy.deepcopy(template), warm, 256, 1)
        for batch_size in BATCH_SIZES[args.model]:
            plain: list[float] = []
            bare: list[float] = []
            glass: list[float] = []
            for rep in range(repeats):
                trainer = glassnet_trainer(Path(tmp) / f"{batch_size}-{rep}", epochs)
                sides = {
                    "plain": partial(plain_fit, copy.deepcopy(template), arrays, batch_size, epochs),
                    "lightning": partial(lightning_fit, copy.deepcopy(template), arrays, batch_size, epochs),
                    "glassnet": partial(glassnet_fit, copy.deepcopy(template), arrays, batch_size, trainer),
                }
                order = list(sides) if rep % 2 == 0 else list(reversed(sides))  # mirrored pairs
                took = {}
                for side in order:
                    start = time.perf_counter()
                    sides[side]()
                    took[side] = (time.perf_counter() - start) / epochs
                plain.append(took["plain"])
                bare.append(took["lightning"])
                glass.append(took["glassnet"])
            ps, bs, gs = Stat(plain), Stat(bare), Stat(glass)
            over_bare = Stat(pair_ratios(glass, bare))
            rows.append(
                [
                    batch_size,
                    ps.fmt(),
                    bs.fmt(),
                    gs.fmt(),
                    f"{over_bare.median:.3f}x [{over_bare.lo:.3f}..{over_bare.hi:.3f}]",
                    # --quick times a few tiny epochs: too short to hold to the ceiling.
                    f"{CEILING:.2f}x" + (" (over)" if over_bare.median > CEILING and not args.quick else ""),
                    ratio(pair_ratios(bare, plain)),
                    ratio(pair_ratios(glass, plain)),
                    f"{gflop / ps.median:.0f} / {gflop / gs.median:.0f}",
                ]
            )
    log.info("")
    table(
        [
            "batch",
            "plain s/epoch",
            "bare Lightning s/epoch",
            "glassnet s/epoch",
            "glassnet / bare Lightning (mirrored pairs)",
            "ceiling",
            "bare Lightning / plain (info)",
            "glassnet / plain (info)",
            "GFLOP/s plain / glassnet",
        ],
        rows,
    )
    log.info("load after: %s", loadavg())


if __name__ == "__main__":
    main()
