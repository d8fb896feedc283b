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
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline import io, layout, prepare, tracking
from pipeline.config import Config, as_dict, to_yaml
from pipeline.errors import ConfigError, TrainingError

# torch and Lightning (~4 s to import) are imported where used, after the MLflow helper process
# has started, so the two start-ups overlap (see run).
if TYPE_CHECKING:
    import pytorch_lightning as pl
    import torch

    from pipeline import model
    from pipeline.lit import Classifier

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
    import torch

    from pipeline.lit import Classifier, batches

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
    import torch

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


def build_trainer(cfg: Config, logger: Any, partial: Path) -> tuple[pl.Trainer, dict[str, Any]]:
    """The Trainer of the train stage (config, callbacks, ``logger``), checkpointing into ``partial``;
    and its callbacks by role (history, weight_history, checkpoint)."""
    from pytorch_lightning.callbacks import EarlyStopping

    from pipeline.lit import EpochSeed, History, WeightHistory, safe_checkpoint

    roles = {
        "history": History(),
        "weight_history": WeightHistory(),
        "checkpoint": safe_checkpoint(
            dirpath=partial, filename="best", monitor="val_loss", mode="min", save_last=True
        ),
    }
    callbacks = [
        EpochSeed(cfg.seed),
        roles["history"],
        roles["weight_history"],
        roles["checkpoint"],
        EarlyStopping(monitor="val_loss", mode="min", patience=cfg.train.early_stopping_patience),
    ]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, enable_model_summary=False
    )
    return trainer, roles


def run(cfg: Config) -> dict[str, Any]:
    arrays, summary = prepare.load(cfg)
    prepare.check_batch_size(len(arrays["y_train"]), cfg.train.batch_size)
    uri = tracking.prepare_uri(tracking.resolve_uri(cfg.tracking.uri), cfg.tracking.fallback_to_local)
    tags = run_tags(cfg, summary)

    # Checkpoints of this fit go to a folder that replaces the last good one only on success: a
    # failed or killed run leaves the previous outputs alone, and `train.resume=true` continues it.
    partial = layout.checkpoint_dir(cfg).with_name("checkpoints.partial")
    ckpt_path, resumed_run = resume_point(cfg, partial)
    if ckpt_path is None:
        shutil.rmtree(partial, ignore_errors=True)
    # MLflow lives in a helper process started now, before torch and Lightning are imported, so
    # its own start-up runs beside theirs. Under DDP only rank 0 tracks.
    worker = None
    if tracking.launch_rank() == 0:
        params = tracking.flatten(as_dict(cfg))
        worker = tracking.TrackingWorker(
            uri, cfg.tracking.experiment, cfg.tracking.run_name, tags, params, resumed_run
        )
    try:
        return _train(cfg, arrays, summary, worker, partial, ckpt_path, tags)
    except BaseException as err:
        if worker is not None:
            killed = isinstance(err, KeyboardInterrupt | SystemExit)
            worker.end("KILLED" if killed else "FAILED")
        raise


def _train(
    cfg: Config,
    arrays: dict[str, np.ndarray],
    summary: dict[str, Any],
    worker: tracking.TrackingWorker | None,
    partial: Path,
    ckpt_path: Path | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    import pytorch_lightning as pl

    from pipeline.lit import WorkerLogger

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    net = build_net(cfg, summary["n_features"], summary["n_classes"])
    trainer, roles = build_trainer(cfg, WorkerLogger(worker) if worker is not None else False, partial)
    if trainer.is_global_zero:
        if worker is None:
            raise TrainingError(
                "Lightning made this process rank 0, but RANK / LOCAL_RANK / SLURM_PROCID in the "
                "environment said otherwise, so it did not start MLflow tracking. Unset them and rerun."
            )
        io.write_text(partial / "run_id", worker.run_id)  # waits for the helper to have the run
        io.write_text(partial / "config.yaml", resumable_config(cfg))
    started = datetime.now(timezone.utc)
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
    check_finite(roles["history"].rows)
    if not trainer.is_global_zero or worker is None:
        # Under DDP every rank trains; only rank 0 logs to MLflow and writes the outputs.
        if worker is not None:  # the environment named no rank, yet Lightning made this one non-zero
            worker.end("KILLED")
        return {"rank": trainer.global_rank, "objective": float("nan")}
    return _finish(cfg, net, arrays, roles, partial, worker, tags, started)


def _finish(
    cfg: Config,
    net: model.MLP,
    arrays: dict[str, np.ndarray],
    roles: dict[str, Any],
    partial: Path,
    worker: tracking.TrackingWorker,
    tags: dict[str, str],
    started: datetime,
) -> dict[str, Any]:
    """After a successful fit: keep the best weights, log the model, write every output."""
    from pipeline import model

    history, weight_history, checkpoint = roles["history"], roles["weight_history"], roles["checkpoint"]
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
    staged_model = partial / "model.pt"
    model.save(net, staged_model)
    model_uri = worker.finish(
        staged_model,
        arrays["X_test"][:5],
        {k: float(v) for k, v in metrics.items()},
        {"config.yaml": to_yaml(cfg)},
        cfg.tracking.model_format.value,
    )
    experiment = cfg.tracking.experiment
    info = tracking.RunInfo(worker.uri, experiment, worker.experiment_id, worker.run_id, model_uri)

    # All outputs change together or not at all (a stop signal waits for the block to end).
    with io.uninterrupted():
        (partial / "run_id").unlink(missing_ok=True)
        (partial / "config.yaml").unlink(missing_ok=True)
        layout.model_file(cfg).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_model, layout.model_file(cfg))
        shutil.rmtree(layout.checkpoint_dir(cfg), ignore_errors=True)
        partial.rename(layout.checkpoint_dir(cfg))
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
        info.run_id,
        tracking.ui_command(info.tracking_uri),
    )
    return {**metrics, "run_id": info.run_id, "objective": float(metrics[cfg.train.objective.value])}


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
