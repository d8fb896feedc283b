"""The MLflow helper process of the train stage (tracking.TrackingWorker), against a real SQLite store."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from pipeline import model, tracking


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def _worker(folder: Path, resume: str | None = None) -> tracking.TrackingWorker:
    return tracking.TrackingWorker(
        _uri(folder), "glassnet", "w1", {"dataset": "digits"}, {"optim.lr": 0.01, "seed": 3}, resume
    )


def _saved_net(folder: Path) -> tuple[model.MLP, Path]:
    torch.manual_seed(0)
    net = model.MLP(6, 3, [4], "relu", 0.0).eval()
    path = folder / "model.pt"
    model.save(net, path)
    return net, path


@pytest.mark.parametrize("model_format", ["pickle", "pt2"])
def test_a_run_from_start_to_finish(tmp_path: Path, model_format: str) -> None:
    worker = _worker(tmp_path)
    run_id = worker.run_id
    assert not worker.resumed
    worker.ready()  # answered once the helper has imported all it needs
    worker.log_metrics({"val_loss": 0.5, "epoch": 0}, step=0)
    worker.log_metrics({"val_loss": 0.25, "epoch": 1}, step=1)
    net, path = _saved_net(tmp_path)
    example = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    texts = {"config.yaml": "seed: 3\n"}
    model_uri = worker.finish(path, example, {"best_val_loss": 0.25}, texts, model_format)
    assert worker._proc.returncode == 0  # it has exited

    client = MlflowClient(_uri(tmp_path))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "w1"
    assert run.data.params == {"optim.lr": "0.01", "seed": "3"}
    assert run.data.tags["dataset"] == "digits" and "mlflow.source.name" in run.data.tags
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 0.5), (1, 0.25)]
    assert run.data.metrics["best_val_loss"] == 0.25
    assert client.download_artifacts(run_id, "config.yaml", str(tmp_path)).endswith("config.yaml")
    mlflow.set_tracking_uri(_uri(tmp_path))
    logged = mlflow.pytorch.load_model(model_uri)
    x = torch.from_numpy(example)
    with torch.no_grad():
        assert torch.allclose(logged(x), net(x), atol=1e-6)


def test_a_failed_run_is_marked_and_the_helper_stops(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    run_id = worker.run_id
    worker.end("FAILED")
    assert worker._proc.returncode == 0
    assert MlflowClient(_uri(tmp_path)).get_run(run_id).info.status == "FAILED"


def test_a_stage_that_goes_away_leaves_a_killed_run(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    run_id = worker.run_id
    worker.close()  # its input closes without a word, as when the train stage is killed
    assert MlflowClient(_uri(tmp_path)).get_run(run_id).info.status == "KILLED"


def test_resume_continues_the_run_or_warns_and_starts_a_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _worker(tmp_path)
    run_id = first.run_id
    first.end("KILLED")
    again = _worker(tmp_path, resume=run_id)
    assert again.run_id == run_id and again.resumed
    again.end("FAILED")
    with caplog.at_level(logging.WARNING):
        other = _worker(tmp_path, resume="0123456789abcdef0123456789abcdef")
        assert other.run_id != run_id and not other.resumed
    other.end("FAILED")
    assert "is not in" in caplog.text


def test_an_unusable_store_fails_with_the_stores_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    worker = tracking.TrackingWorker(f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}", "glassnet", None, {}, {})
    with pytest.raises(tracking.TrackingWorkerError, match="MLflow tracking failed"):
        worker.run_id  # noqa: B018
    worker.end("FAILED")  # never raises, even with the helper gone


def test_an_error_while_logging_an_epoch_surfaces_at_finish(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    worker.log_metrics({"bad#name": 1.0}, step=0)  # MLflow refuses '#' in a metric name
    _, path = _saved_net(tmp_path)
    with pytest.raises(tracking.TrackingWorkerError, match="bad#name"):
        worker.finish(path, np.zeros((2, 6), dtype=np.float32), {}, {})
    worker.end("FAILED")


def test_launch_rank_reads_the_launchers_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert tracking.launch_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert tracking.launch_rank() == 3
    monkeypatch.setenv("RANK", "1")  # Lightning's order: RANK first
    assert tracking.launch_rank() == 1
