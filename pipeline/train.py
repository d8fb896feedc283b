"""Stage 2: train the network with PyTorch Lightning, tracked in a new MLflow run.

    python -m pipeline.train
    python -m pipeline.train trainer.max_epochs=1 model.hidden_sizes=[32]
    python -m pipeline.train +experiment=keras_two_layer

Writes ``<paths.train>/model.pt`` (architecture + weights of the best epoch by
validation loss), ``run.json`` (the MLflow run every later stage attaches to),
the per-epoch history (a DVC plot) and the train metrics (a DVC metric).
"""

from __future__ import annotations

import logging
import math
import os
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline import io, layout, model, prepare, tracking
from pipeline.config import Config, as_dict
from pipeline.errors import TrainingError
from pipeline.lit import Classifier, History, batches

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


def build_net(cfg: Config, in_features: int, n_classes: int) -> model.MLP:
    net: model.MLP = instantiate(cfg.model, in_features=in_features, n_classes=n_classes)
    return net


def optimizer_factory(cfg: Config) -> Any:
    # Keys left at None belong to other optimizers (momentum is SGD's, not Adam's).
    options = {k: v for k, v in OmegaConf.to_container(cfg.optim).items() if v is not None}  # type: ignore[union-attr]
    return instantiate(options)


def check_finite(rows: list[dict[str, float]]) -> None:
    """Raise naming the first epoch whose loss is NaN or infinite."""
    for row in rows:
        for key in ("train_loss", "val_loss"):
            if key in row and not math.isfinite(row[key]):
                raise TrainingError(
                    f"Training diverged: {key} is {row[key]} at epoch {int(row['epoch'])}. "
                    "Lower the learning rate (e.g. optim.lr=0.0001) or the batch size and rerun."
                )


def fit(
    net: torch.nn.Module,
    optimizer: Any,
    arrays: dict[str, np.ndarray],
    trainer: pl.Trainer,
    batch_size: int,
    seed: int,
) -> Classifier:
    """Core: fit ``net`` on the train split, validating on val each epoch."""
    tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
    module = Classifier(net, optimizer)
    trainer.fit(
        module,
        train_dataloaders=batches(tensors["X_train"], tensors["y_train"], batch_size, True, seed),
        val_dataloaders=batches(tensors["X_val"], tensors["y_val"], batch_size, False),
    )
    return module


def best_weights(checkpoint: str) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint, loaded without unpickling code."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {key.removeprefix("net."): value for key, value in state.items()}


def run(cfg: Config) -> dict[str, Any]:
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.loggers import MLFlowLogger

    arrays, summary = prepare.load(cfg)
    prepare.check_batch_size(len(arrays["y_train"]), cfg.train.batch_size)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    net = build_net(cfg, summary["n_features"], summary["n_classes"])

    uri = tracking.resolve_uri(cfg.tracking.uri)
    root = tracking.project_root()
    experiment_id = tracking.ensure_experiment(uri, cfg.tracking.experiment)
    tags = {**tracking.git_info(root), "dataset": summary["dataset"], "stage": "train"}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    logger = MLFlowLogger(
        experiment_name=cfg.tracking.experiment,
        run_name=cfg.tracking.run_name,
        tracking_uri=uri,
        tags=tags,
        log_model=False,
    )
    logger.log_hyperparams(tracking.flatten(as_dict(cfg)))

    history = History()
    checkpoint = ModelCheckpoint(
        dirpath=layout.checkpoint_dir(cfg), filename="best", monitor="val_loss", mode="min", save_last=True
    )
    callbacks = [
        history,
        checkpoint,
        EarlyStopping(monitor="val_loss", mode="min", patience=cfg.train.early_stopping_patience),
    ]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, enable_model_summary=False
    )
    started = datetime.now(timezone.utc)
    fit(net, optimizer_factory(cfg), arrays, trainer, cfg.train.batch_size, cfg.seed)
    check_finite(history.rows)

    if checkpoint.best_model_path:
        net.load_state_dict(best_weights(checkpoint.best_model_path))
    net.eval()
    best = min(history.rows, key=lambda row: row["val_loss"])
    metrics = {
        "best_val_loss": best["val_loss"],
        "best_val_acc": best["val_acc"],
        "best_epoch": int(best["epoch"]),
        "epochs_run": len(history.rows),
        "n_parameters": model.n_parameters(net),
    }
    run_id = str(logger.run_id)
    model_uri = tracking.log_model(uri, run_id, net, arrays["X_test"][:5])
    info = tracking.RunInfo(uri, cfg.tracking.experiment, experiment_id, run_id, model_uri)
    tracking.log_metrics(info, {k: float(v) for k, v in metrics.items()})

    model.save(net, layout.model_file(cfg))
    io.write_json(
        layout.run_file(cfg),
        {
            **info.to_dict(),
            **tags,
            "started": started.isoformat(timespec="seconds"),
            "layers": model.describe(net),
            "arch": net.arch,
        },
    )
    io.write_csv(
        cfg.paths.history,
        HISTORY_COLUMNS,
        [[int(r["epoch"]), *(r.get(c, float("nan")) for c in HISTORY_COLUMNS[1:])] for r in history.rows],
    )
    io.write_json(cfg.paths.train_metrics, metrics)
    log.info(
        "Trained %s: best val_loss %.4f, val_acc %.4f at epoch %d; MLflow run %s (%s)",
        net.arch,
        best["val_loss"],
        best["val_acc"],
        best["epoch"],
        run_id,
        tracking.ui_command(uri),
    )
    return {**metrics, "run_id": run_id}


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
