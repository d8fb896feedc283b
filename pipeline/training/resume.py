"""The config a training run records, and resuming an interrupted fit (``train.resume=true``).

A fit checkpoints into a folder of its own (``checkpoints.partial``) that replaces the last good
one only when the stage succeeds. Beside the checkpoints it holds the MLflow run's id and the
config the fit ran with: a later stage with ``train.resume=true`` and the same config continues
from the last checkpoint, in the same MLflow run.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import io
from pipeline.config import Config, plain
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

RUN_ID, CONFIG, LAST = "run_id", "config.yaml", "last.ckpt"


def tracked_config(cfg: Config) -> dict[str, Any]:
    """The config sections the train stage reads, as plain values: the run's params and config.yaml.
    The publish stage logs the later stages' sections to the same run."""
    sections = {
        "seed": cfg.seed,
        "task": cfg.task,
        "data": cfg.data,
        "model": cfg.model,
        "optim": cfg.optim,
        "scheduler": cfg.scheduler,
        "loss": cfg.loss,
        "trainer": cfg.trainer,
        "train": cfg.train,
        "tracking": cfg.tracking,
    }
    return {name: plain(value) for name, value in sections.items()}


def resumable_config(cfg: Config) -> str:
    """The config as a resumed run must match it (whether to resume aside)."""
    config = tracked_config(cfg)
    config["train"]["resume"] = False
    return yaml.safe_dump(config, sort_keys=True)


@dataclass(frozen=True)
class ResumePoint:
    """Where a fit starts: the interrupted fit's last checkpoint and MLflow run (None, None: from
    scratch); ``stale``: the run of a stage that died without a word (SIGKILL, a lost machine),
    when not resumed, which may still be RUNNING."""

    checkpoint: Path | None = None
    run_id: str | None = None
    stale: str | None = None


def resume_point(cfg: Config, partial: Path) -> ResumePoint:
    """Where the fit checkpointing into ``partial`` starts. Not resuming, the folder is cleared
    (an earlier failed run's checkpoints must not be mistaken for this run's)."""
    last, run_id, config = partial / LAST, partial / RUN_ID, partial / CONFIG
    if cfg.train.resume:
        if last.exists() and run_id.exists() and config.exists():
            if config.read_text() != resumable_config(cfg):
                raise ConfigError(
                    f"train.resume=true, but the interrupted run in {partial} used a different "
                    f"configuration (see {config}). Resume with that configuration, or drop "
                    "train.resume to start afresh."
                )
            return ResumePoint(last, run_id.read_text().strip())
        log.warning("train.resume=true but %s holds no interrupted run: training from scratch", partial)
    stale = run_id.read_text().strip() if run_id.exists() else None
    shutil.rmtree(partial, ignore_errors=True)
    return ResumePoint(stale=stale)


def record(partial: Path, run_id: str, cfg: Config) -> None:
    """Write what resuming the fit in ``partial`` needs beside its checkpoints: its MLflow run and
    its config."""
    io.write_text(partial / RUN_ID, run_id)
    io.write_text(partial / CONFIG, resumable_config(cfg))


def forget(partial: Path) -> None:
    """Drop the resume records once the fit's outputs are written: the checkpoints stay."""
    (partial / RUN_ID).unlink(missing_ok=True)
    (partial / CONFIG).unlink(missing_ok=True)
