"""Stage 2: train the network with PyTorch Lightning, tracked in a new MLflow run.

    python -m pipeline.train
    python -m pipeline.train trainer.max_epochs=1 model.hidden_sizes=[32]
    python -m pipeline.train +experiment=keras_two_layer

Writes ``<paths.train>/model.pt`` (architecture + weights of the best epoch by
validation loss), ``run.json`` (the MLflow run every later stage attaches to),
``weight_history.json`` (weight quantiles per layer before training and after each epoch),
the per-epoch history (a DVC plot) and the train metrics (a DVC metric).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline import io, layout, model, prepare, tracking
from pipeline.config import Config, as_dict, to_yaml
from pipeline.errors import ConfigError, TrainingError
from pipeline.lit import Classifier, EpochSeed, History, WeightHistory, batches, safe_checkpoint

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
    ckpt_path: Path | None = None,
    batches_per_step: int = 1,
) -> Classifier:
    """Core: fit ``net`` on the train split, validating on val each epoch (from a checkpoint if given).

    ``batches_per_step`` mini-batches go through each Lightning step (see lit.Classifier); the
    result does not depend on it, only the time Lightning's per-step machinery takes.
    """
    tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
    module = Classifier(net, optimizer, batch_size)
    chunk = batches_per_step
    trainer.fit(
        module,
        train_dataloaders=batches(tensors["X_train"], tensors["y_train"], batch_size, True, seed, chunk),
        val_dataloaders=batches(tensors["X_val"], tensors["y_val"], batch_size, False, chunk=chunk),
        ckpt_path=ckpt_path,
    )
    return module


def best_weights(checkpoint: str) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint, loaded without unpickling code."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {key.removeprefix("net."): value for key, value in state.items()}


def run_tags(cfg: Config, summary: dict[str, Any]) -> dict[str, str]:
    """What a run needs to be reproduced: code version, data fingerprint, libraries, DVC context."""
    tags = {
        **tracking.git_info(tracking.project_root()),
        **tracking.versions(),
        "dataset": summary["dataset"],
        "data_md5": tracking.file_md5(layout.data_file(cfg)),
        "dvc_stage": "train",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("GLASSNET_SWEEP"):  # set by pipeline.cli in a Hydra multirun
        tags["sweep"] = os.environ["GLASSNET_SWEEP"]
        tags["sweep_job"] = os.environ.get("GLASSNET_SWEEP_JOB", "")
    return tags


def resumable_config(cfg: Config) -> str:
    """The config as a resumed run must match it (whether to resume aside)."""
    plain = as_dict(cfg)
    plain["train"]["resume"] = False
    return yaml.safe_dump(plain, sort_keys=True)


def resume_point(cfg: Config, partial: Path) -> tuple[Path | None, str | None]:
    """(checkpoint, MLflow run id) of an interrupted run to continue, if asked and possible."""
    last, run_id, config = partial / "last.ckpt", partial / "run_id", partial / "config.yaml"
    if not cfg.train.resume:
        return None, None
    if not (last.exists() and run_id.exists() and config.exists()):
        log.warning("train.resume=true but %s holds no interrupted run: training from scratch", partial)
        return None, None
    if config.read_text() != resumable_config(cfg):
        raise ConfigError(
            f"train.resume=true, but the interrupted run in {partial} used a different configuration "
            f"(see {config}). Resume with that configuration, or drop train.resume to start afresh."
        )
    return last, run_id.read_text().strip()


def run(cfg: Config) -> dict[str, Any]:
    from pytorch_lightning.callbacks import EarlyStopping
    from pytorch_lightning.loggers import MLFlowLogger

    arrays, summary = prepare.load(cfg)
    prepare.check_batch_size(len(arrays["y_train"]), cfg.train.batch_size)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    net = build_net(cfg, summary["n_features"], summary["n_classes"])
    uri = tracking.prepare_uri(tracking.resolve_uri(cfg.tracking.uri), cfg.tracking.fallback_to_local)
    experiment_id = tracking.ensure_experiment(uri, cfg.tracking.experiment)
    tags = run_tags(cfg, summary)

    # Checkpoints of this fit go to a folder that replaces the last good one only on success: a
    # failed or killed run leaves the previous outputs alone, and `train.resume=true` continues it.
    partial = layout.checkpoint_dir(cfg).with_name("checkpoints.partial")
    ckpt_path, resumed_run = resume_point(cfg, partial)
    if resumed_run is not None and not tracking.run_exists(uri, resumed_run):
        log.warning(
            "The interrupted run's MLflow run %s is not in %s: logging to a new run", resumed_run, uri
        )
        resumed_run = None
    if ckpt_path is None:
        shutil.rmtree(partial, ignore_errors=True)
    logger = MLFlowLogger(
        experiment_name=cfg.tracking.experiment,
        run_name=cfg.tracking.run_name,
        tracking_uri=uri,
        tags=tags,
        log_model=False,
        run_id=resumed_run,
    )
    history = History()
    checkpoint = safe_checkpoint(
        dirpath=partial, filename="best", monitor="val_loss", mode="min", save_last=True
    )
    weight_history = WeightHistory()
    callbacks = [
        EpochSeed(cfg.seed),
        history,
        weight_history,
        checkpoint,
        EarlyStopping(monitor="val_loss", mode="min", patience=cfg.train.early_stopping_patience),
    ]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, enable_model_summary=False
    )
    if trainer.is_global_zero:
        if resumed_run is None:
            logger.log_hyperparams(tracking.flatten(as_dict(cfg)))
        io.write_text(partial / "run_id", str(logger.run_id))
        io.write_text(partial / "config.yaml", resumable_config(cfg))
    run_id = str(logger.run_id)
    started = datetime.now(timezone.utc)
    try:
        fit(
            net,
            optimizer_factory(cfg),
            arrays,
            trainer,
            cfg.train.batch_size,
            cfg.seed,
            ckpt_path,
            cfg.train.batches_per_step,
        )
        check_finite(history.rows)
        if not trainer.is_global_zero:
            # Under DDP every rank trains; only rank 0 logs to MLflow and writes the outputs.
            return {"rank": trainer.global_rank, "objective": float("nan")}
        return _finish(
            cfg,
            net,
            arrays,
            history,
            weight_history,
            checkpoint,
            partial,
            uri,
            experiment_id,
            run_id,
            tags,
            started,
        )
    except BaseException as err:
        if trainer.is_global_zero:
            killed = isinstance(err, KeyboardInterrupt | SystemExit)
            tracking.end_run(uri, run_id, "KILLED" if killed else "FAILED")
        raise


def _finish(
    cfg: Config,
    net: model.MLP,
    arrays: dict[str, np.ndarray],
    history: History,
    weight_history: WeightHistory,
    checkpoint: Any,
    partial: Path,
    uri: str,
    experiment_id: str,
    run_id: str,
    tags: dict[str, str],
    started: datetime,
) -> dict[str, Any]:
    """After a successful fit: keep the best weights, log the model, write every output."""
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
    model_uri = tracking.log_model(uri, run_id, net, arrays["X_test"][:5])
    info = tracking.RunInfo(uri, cfg.tracking.experiment, experiment_id, run_id, model_uri)
    tracking.log_metrics(info, {k: float(v) for k, v in metrics.items()})
    tracking.log_text(info, to_yaml(cfg), "config.yaml")

    # All outputs change together or not at all (a stop signal waits for the block to end).
    with io.uninterrupted():
        (partial / "run_id").unlink(missing_ok=True)
        (partial / "config.yaml").unlink(missing_ok=True)
        shutil.rmtree(layout.checkpoint_dir(cfg), ignore_errors=True)
        partial.rename(layout.checkpoint_dir(cfg))
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
        io.write_json(layout.weight_history_file(cfg), weight_history.to_dict())
    log.info(
        "Trained %s: best val_loss %.4f, val_acc %.4f at epoch %d; MLflow run %s (%s)",
        net.arch,
        best["val_loss"],
        best["val_acc"],
        best["epoch"],
        run_id,
        tracking.ui_command(uri),
    )
    return {**metrics, "run_id": run_id, "objective": float(metrics[cfg.train.objective.value])}


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
