"""Where each stage's files live inside the folders named in ``cfg.paths``.

Folders come from config (and dvc.yaml lists them); the file names inside a
stage's folder are fixed here, once, so every stage agrees on them.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config


def data_file(cfg: Config) -> Path:
    return Path(cfg.paths.prepare) / "data"  # one .npy file per array (io.write_arrays)


def summary_file(cfg: Config) -> Path:
    return Path(cfg.paths.prepare) / "summary.json"


def model_file(cfg: Config) -> Path:
    return Path(cfg.paths.train) / "model.pt"


def run_file(cfg: Config) -> Path:
    return Path(cfg.paths.train) / "run.json"


def checkpoint_dir(cfg: Config) -> Path:
    return Path(cfg.paths.train) / "checkpoints"


def evaluation_file(cfg: Config) -> Path:
    return Path(cfg.paths.evaluate) / "evaluation.json"


def shap_file(cfg: Config) -> Path:
    return Path(cfg.paths.explain) / "shap.npz"


def importance_file(cfg: Config) -> Path:
    """Mean |SHAP| per class and feature, with the names: what the comparison page compares."""
    return Path(cfg.paths.explain) / "importance.json"


def checks_file(cfg: Config) -> Path:
    """The explanation checks in words (sanity verdict, surrogate rules) for the report."""
    return Path(cfg.paths.explain) / "checks.json"


def weight_history_file(cfg: Config) -> Path:
    return Path(cfg.paths.train) / "weight_history.json"


def gradient_norms_file(cfg: Config) -> Path:
    return Path(cfg.paths.train) / "gradient_norms.json"


def loss_line_file(cfg: Config) -> Path:
    return Path(cfg.paths.train) / "loss_line.json"


def network_file(cfg: Config) -> Path:
    return Path(cfg.paths.visualize) / "network.json"


def mlflow_record(folder: str) -> Path:
    """What a stage hands to the publish stage for MLflow (see tracking.records)."""
    return Path(folder) / "mlflow.json"


def figure_dir(folder: str) -> Path:
    return Path(folder) / "figures"
