"""Stage 2: train the network with PyTorch Lightning, tracked in a new MLflow run.

    python -m pipeline train
    python -m pipeline train trainer.max_epochs=1 model.hidden_sizes=[32]
    python -m pipeline train +experiment=keras_two_layer

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
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from pipeline import artifacts, io, layout, task
from pipeline.config import Config
from pipeline.data.batch_size import check_batch_size
from pipeline.data.summary import Summary
from pipeline.errors import TrainingError
from pipeline.nets import model
from pipeline.nets.arch import summary_line
from pipeline.tracking import inputs, location, models, provenance, runs
from pipeline.tracking.logger import RunLogger
from pipeline.training import build, resume
from pipeline.training.fit import Fitted, Training, shaped
from pipeline.training.resume import ResumePoint

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
    """Load the prepared splits, build and check the fit, open the MLflow run, fit, write."""
    arrays, summary = artifacts.load_data(cfg)
    check_batch_size(len(arrays["y_train"]), cfg.train.batch_size)
    uri = location.prepare_uri(location.resolve_uri(cfg.tracking.uri), cfg.tracking.fallback_to_local)
    data_md5s = provenance.file_md5s(layout.data_file(cfg))
    # Checkpoints of this fit go to a folder that replaces the last good one only on success: a
    # failed or killed run leaves the previous outputs alone, and `train.resume=true` continues it.
    partial = layout.checkpoint_dir(cfg).with_name("checkpoints.partial")
    point = resume.resume_point(cfg, partial)

    # Built and checked before the run opens: a bad model or Trainer key stops here, leaving no
    # FAILED run behind in the user's MLflow list. Under DDP only rank 0 tracks.
    shape, tracked = artifacts.input_shape(summary), runs.launch_rank() == 0
    training = build.training(cfg, task.of(summary), shape, len(arrays["y_train"]), tracked, partial)
    rows = shaped(arrays, shape)
    if not tracked:
        return other_rank(training, rows, point)
    tags = run_tags(summary, data_md5s)
    with opened_run(cfg, uri, tags, summary, data_md5s, point) as logger:
        training.trainer.logger = logger
        if training.trainer.is_global_zero:
            resume.record(partial, str(logger.run_id), cfg)
        started = datetime.now(timezone.utc)
        module = training.fit(rows, point.checkpoint)
        if not training.trainer.is_global_zero:  # no rank in the environment, yet Lightning made one
            runs.terminate(uri, str(logger.run_id), "KILLED")
            return {"rank": training.trainer.global_rank, "objective": math.nan}
        fitted = training.result(module, arrays)
        info = log_model(cfg, fitted, training, logger, partial, arrays)
        write(cfg, fitted, training, info, tags, started, partial)
    objective = float(fitted.metrics[cfg.train.objective.value])
    return {**fitted.metrics, "run_id": info.run_id, "objective": objective}


def run_tags(summary: Summary, data_md5s: dict[str, str]) -> dict[str, str]:
    """What a run needs to be reproduced: code version, data fingerprint, libraries, DVC context.
    ``data_md5s``: {file: MD5} of the prepared data folder (``provenance.file_md5s``)."""
    tags = {
        **provenance.git_info(location.project_root()),
        **provenance.versions(),
        "dataset": summary.dataset,
        "task": task.of(summary).name,
        "data_md5": provenance.combined_md5(data_md5s),
        "dvc_stage": "train",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("GLASSNET_SWEEP"):  # set by pipeline.cli in a Hydra multirun
        tags["sweep"] = os.environ["GLASSNET_SWEEP"]
        tags["sweep_job"] = os.environ.get("GLASSNET_SWEEP_JOB", "")
    return tags


@contextmanager
def opened_run(
    cfg: Config,
    uri: str,
    tags: dict[str, str],
    summary: Summary,
    data_md5s: dict[str, str],
    point: ResumePoint,
) -> Iterator[RunLogger]:
    """The MLflow run the fit logs to, as a Lightning logger: the interrupted run when resuming,
    else a new one with the config as params and the splits as inputs. A stage that stops inside
    the block marks it FAILED (KILLED on Ctrl-C or a stop signal)."""
    # client.create_run sets no source tags (MLflow's fluent API does): name this command.
    source = {"mlflow.source.name": sys.argv[0], "mlflow.source.type": "LOCAL"}
    params = runs.flatten(resume.tracked_config(cfg))
    experiment, name = cfg.tracking.experiment, cfg.tracking.run_name
    started = runs.start(
        uri, experiment, name, {**tags, **source}, params, resume=point.run_id, stale=point.stale
    )
    try:
        if not started.resumed:  # a resumed run holds its inputs already
            digests = inputs.split_digests(data_md5s)
            folder = layout.data_file(cfg).resolve()
            inputs.log_splits(
                uri, started.run_id, folder, summary.dataset, summary.uri, summary.loader, digests
            )
        yield RunLogger(uri, started.run_id)
    except BaseException as err:
        killed = isinstance(err, KeyboardInterrupt | SystemExit)
        runs.end_quietly(uri, started.run_id, "KILLED" if killed else "FAILED")
        raise


def other_rank(training: Training, rows: dict[str, Any], point: ResumePoint) -> dict[str, Any]:
    """Under DDP every rank trains; only rank 0 logs to MLflow and writes the outputs."""
    if training.trainer.is_global_zero:
        raise TrainingError(
            "Lightning made this process rank 0, but RANK / LOCAL_RANK / SLURM_PROCID in the "
            "environment said otherwise, so it did not start MLflow tracking. Unset them and rerun."
        )
    training.fit(rows, point.checkpoint)
    return {"rank": training.trainer.global_rank, "objective": math.nan}


def log_model(
    cfg: Config, fitted: Fitted, training: Training, logger: RunLogger, partial: Path, arrays: dict[str, Any]
) -> runs.RunInfo:
    """Save the kept network beside the checkpoints, log it and the final metrics to the run, and
    end the run: its identity, as ``run.json`` will hold it."""
    staged = partial / "model.pt"
    target = str(cfg.model._target_)
    model.save(
        fitted.net, staged, target=target, arguments=training.arguments, input_shape=training.input_shape
    )
    uri, run_id = logger.uri, str(logger.run_id)
    fmt = cfg.tracking.model_format.value
    model_uri = models.log_saved(uri, run_id, staged.resolve(), arrays["X_test"][:5], fmt)
    texts = {"config.yaml": yaml.safe_dump(resume.tracked_config(cfg), sort_keys=False)}
    runs.finish(uri, run_id, {k: float(v) for k, v in fitted.metrics.items()}, texts)
    return runs.RunInfo(uri, cfg.tracking.experiment, str(logger.experiment_id), run_id, model_uri)


def write(
    cfg: Config,
    fitted: Fitted,
    training: Training,
    info: runs.RunInfo,
    tags: dict[str, str],
    started: datetime,
    partial: Path,
) -> None:
    """Every output of a successful fit, all together or not at all (a stop signal waits for the
    block to end): the model, the checkpoints, run.json (the run, its tags, when it started, the
    network), the history, the metrics, the weight and gradient histories and the loss line."""
    callbacks, the_task = training.callbacks, training.task
    arch = {"_target_": str(cfg.model._target_), **model.plain(training.arguments)}
    with io.uninterrupted():
        resume.forget(partial)
        layout.model_file(cfg).parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial / "model.pt", layout.model_file(cfg))
        shutil.rmtree(layout.checkpoint_dir(cfg), ignore_errors=True)
        partial.rename(layout.checkpoint_dir(cfg))
        layers = model.describe(fitted.net)
        when = started.isoformat(timespec="seconds")
        record = {**info.to_dict(), **tags, "started": when, "layers": layers, "arch": arch}
        io.write_json(layout.run_file(cfg), record)
        columns = the_task.history_columns
        io.write_csv(
            cfg.paths.history,
            columns,
            [[int(r["epoch"]), *(r.get(c, math.nan) for c in columns[1:])] for r in callbacks.history.rows],
        )
        io.write_json(cfg.paths.train_metrics, fitted.metrics)
        io.write_json(layout.weight_history_file(cfg), callbacks.weight_history.to_dict())
        io.write_json(layout.gradient_norms_file(cfg), callbacks.gradient_norms.to_dict())
        io.write_json(layout.loss_line_file(cfg), fitted.loss_line)
    log.info(
        "Trained %s: best val_loss %.4f, %s at epoch %d; MLflow run %s (%s)",
        summary_line(arch),
        fitted.best["val_loss"],
        the_task.describe_second(fitted.best[f"val_{the_task.second_metric}"]),
        fitted.best["epoch"],
        info.run_id,
        location.ui_command(info.tracking_uri),
    )


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
