"""pipeline.tracking against a real SQLite store."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from pipeline import io, layout
from pipeline.nets import model
from pipeline.tracking import location, models, records, runs, store
from pipeline.tracking.logger import RunLogger


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def _start(folder: Path, **kwargs: Any) -> runs.Started:
    tags = {"dataset": "digits", "mlflow.source.name": "train"}
    params = {"optim.lr": 0.01, "seed": 3}
    return runs.start(_uri(folder), "glassnet", "w1", tags, params, **kwargs)


def _status(folder: Path, run_id: str) -> str:
    return str(MlflowClient(_uri(folder)).get_run(run_id).info.status)


@pytest.mark.parametrize("model_format", ["pickle", "pt2"])
def test_a_run_from_start_to_finish(
    tmp_path: Path, model_format: str, caplog: pytest.LogCaptureFixture
) -> None:
    uri = _uri(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pipeline.tracking.runs"):
        started = _start(tmp_path)
    assert not started.resumed and started.killed is None
    assert not [r for r in caplog.records if r.name == "pipeline.tracking.runs"]  # nothing to warn of
    logger = RunLogger(uri, started.run_id)
    logger.log_metrics({"val_loss": 0.5, "epoch": 0}, step=0)
    logger.log_metrics({"val_loss": 0.25, "epoch": 1}, step=1)
    logger.finalize("success")  # Lightning's end of fit: the run goes on
    assert _status(tmp_path, started.run_id) == "RUNNING"
    torch.manual_seed(0)
    net = model.MLP(6, 3, [4], "relu", 0.0).eval()
    model.save(net, tmp_path / "model.pt")
    example = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    logged = models.log_saved(uri, started.run_id, tmp_path / "model.pt", example, model_format)
    runs.finish(uri, started.run_id, {"best_val_loss": 0.25}, {"config.yaml": "seed: 3\n"})

    client = MlflowClient(uri)
    run = client.get_run(started.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "w1"
    assert run.data.params == {"optim.lr": "0.01", "seed": "3"}
    assert run.data.tags["dataset"] == "digits" and run.data.tags["mlflow.source.name"] == "train"
    history = client.get_metric_history(started.run_id, "val_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 0.5), (1, 0.25)]
    assert run.data.metrics["best_val_loss"] == 0.25
    assert client.download_artifacts(started.run_id, "config.yaml", str(tmp_path)).endswith("config.yaml")
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pytorch.load_model(logged)
    x = torch.from_numpy(example)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)
    if model_format == "pickle":  # glassnet's code travels with the model: the whole package
        folder = Path(mlflow.artifacts.download_artifacts(logged, dst_path=str(tmp_path / "m")))
        assert (folder / "code" / "pipeline" / "nets" / "model.py").is_file()


def test_a_failed_run_is_marked(tmp_path: Path) -> None:
    started = _start(tmp_path)
    runs.terminate(_uri(tmp_path), started.run_id, "FAILED")
    assert _status(tmp_path, started.run_id) == "FAILED"


def test_a_run_left_running_by_a_dead_stage_is_killed_by_the_next_start(tmp_path: Path) -> None:
    dead = _start(tmp_path)  # its stage was SIGKILLed: nobody marked the run
    finished = _start(tmp_path)
    runs.terminate(_uri(tmp_path), finished.run_id, "FINISHED")
    after = _start(tmp_path, stale=dead.run_id)
    assert after.killed == dead.run_id and _status(tmp_path, dead.run_id) == "KILLED"
    assert _start(tmp_path, stale=finished.run_id).killed is None  # only a RUNNING one
    assert _status(tmp_path, finished.run_id) == "FINISHED"
    assert _start(tmp_path, stale="0" * 32).killed is None  # not in this store: nothing to do


def test_the_train_stage_kills_the_run_a_dead_stage_left_running(
    make_cfg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.stages import prepare, train

    cfg = make_cfg("trainer.max_epochs=1")
    prepare.run(cfg)
    uri = str(cfg.tracking.uri)
    experiment = store.ensure_experiment(uri, "glassnet")
    dead = store.client(uri).create_run(experiment).info.run_id
    partial = layout.checkpoint_dir(cfg).with_name("checkpoints.partial")
    io.write_text(partial / "run_id", dead)  # what a SIGKILLed train stage leaves behind
    with caplog.at_level(logging.WARNING, logger="pipeline.tracking.runs"):
        result = train.run(cfg)
    assert _status(tmp_path, dead) == "KILLED" and f"MLflow run {dead}" in caplog.text
    assert _status(tmp_path, result["run_id"]) == "FINISHED"


def test_resume_continues_the_run_or_warns_and_starts_a_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _start(tmp_path)
    runs.terminate(_uri(tmp_path), first.run_id, "KILLED")
    again = _start(tmp_path, resume=first.run_id, stale=first.run_id)
    assert again.run_id == first.run_id and again.resumed and again.killed is None
    assert _status(tmp_path, first.run_id) == "RUNNING"
    with caplog.at_level(logging.WARNING, logger="pipeline.tracking.runs"):
        other = _start(tmp_path, resume="0123456789abcdef0123456789abcdef")
    assert other.run_id != first.run_id and not other.resumed
    assert "0123456789abcdef0123456789abcdef is not in" in caplog.text


def test_an_unusable_store_fails_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    bad = f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}"
    with pytest.raises(runs.TrackingError, match=r"MLflow tracking failed.*file"):
        runs.start(bad, "glassnet", None, {}, {})
    (tmp_path / "mlflow.db").write_text("not a database")
    with pytest.raises(runs.TrackingError, match="not a database"):
        runs.start(_uri(tmp_path), "glassnet", None, {}, {})


def test_an_error_while_logging_an_epoch_surfaces(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    started = _start(tmp_path)
    logger = RunLogger(uri, started.run_id)
    logger.log_metrics({"val_loss": 1.0}, step=0)
    store.client(uri).delete_run(started.run_id)  # MLflow refuses metrics of a deleted run
    with pytest.raises(Exception, match="deleted"):
        logger.log_metrics({"val_loss": 0.5}, step=1)


def test_the_logger_logs_on_rank_zero_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = _uri(tmp_path)
    started = _start(tmp_path)
    logger = RunLogger(uri, started.run_id)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger.log_metrics({"val_loss": 1.0}, step=0)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert store.client(uri).get_metric_history(started.run_id, "val_loss") == []
    assert logger.version == started.run_id and logger.name == started.experiment_id


def test_params_are_logged_once_and_a_changed_value_is_reported(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    run_id = store.client(uri).create_run(store.ensure_experiment(uri, "glassnet")).info.run_id
    assert runs.log_params(uri, run_id, {"a": 1, "b": [2, 3], "long": "x" * 7000}) == {}
    assert runs.log_params(uri, run_id, {"a": 1, "b": [2], "c": True}) == {"b": ("[2, 3]", "[2]")}
    logged = MlflowClient(uri).get_run(run_id).data.params
    assert logged == {"a": "1", "b": "[2, 3]", "long": "x" * 6000, "c": "True"}


def test_two_processes_open_a_new_store_at_once(tmp_path: Path) -> None:
    """The store lock: both would run MLflow's table migrations on the new file, and one fail."""
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as two:
        found = [two.submit(store.ensure_experiment, _uri(tmp_path), "glassnet") for _ in range(2)]
        assert found[0].result() == found[1].result()


def test_a_record_holds_finite_metrics_and_the_files(tmp_path: Path) -> None:
    run = runs.RunInfo("sqlite:///x.db", "e", "1", "r1", "")
    records.write(tmp_path / "mlflow.json", run, {"a": 1.0, "b": float("nan")}, [tmp_path / "f.png"], "x")
    saved = io.read_json(tmp_path / "mlflow.json", "test")
    assert saved == {
        "run_id": "r1",
        "artifact_path": "x",
        "metrics": {"a": 1.0},
        "artifacts": [str(tmp_path / "f.png")],
    }
    io.write_json(tmp_path / "run.json", {**run.to_dict(), "git_commit": "abc"})
    assert runs.load_run(tmp_path / "run.json") == run


def test_launch_rank_reads_the_launchers_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert runs.launch_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert runs.launch_rank() == 3
    monkeypatch.setenv("RANK", "1")  # Lightning's order: RANK first
    assert runs.launch_rank() == 1


def test_uris(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert location.resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert location.resolve_uri("sqlite:///sub/m.db") == f"sqlite:///{tmp_path / 'sub/m.db'}"
    assert location.ui_command("http://mlflow:5000") == "http://mlflow:5000"
    assert store.artifact_location(_uri(tmp_path), "my exp") == (tmp_path / "mlruns" / "my-exp").as_uri()
    assert runs.flatten({"a": {"b": 1, "c": [2]}, "d": "x"}) == {"a.b": 1, "a.c": [2], "d": "x"}


def test_the_splits_are_logged_as_dataset_inputs(tmp_path: Path) -> None:
    """Name, digest, source, context, schema and profile per split; equal arrays, equal digests."""
    import json

    from pipeline.tracking import inputs, provenance

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 10), ("test", 12)):
        arrays[f"X_{split}"] = rng.normal(size=(n, 4)).astype(np.float32)
        arrays[f"y_{split}"] = rng.integers(0, 3, n)
    first, second = tmp_path / "a", tmp_path / "b"
    io.write_arrays(first, **arrays)
    io.write_arrays(second, **{**arrays, "X_test": arrays["X_test"] + 1})  # only the test split differs
    logged = {}
    # (MLflow keeps one dataset per name and digest in an experiment: the names differ here so
    # that the second source is stored too.)
    for folder, name, source in ((first, "iris", str(tmp_path / "my.csv")), (second, "wine", None)):
        run_id = _start(tmp_path).run_id
        digests = inputs.split_digests(provenance.file_md5s(folder))
        args = (_uri(tmp_path), run_id, folder, name, source, "pipeline.data.table.load_table", digests)
        inputs.log_splits(*args)
        found = MlflowClient(_uri(tmp_path)).get_run(run_id).inputs.dataset_inputs
        logged[folder] = {i.tags[0].value: i.dataset for i in found if i.tags[0].key == "mlflow.data.context"}

    a, b = logged[first], logged[second]
    assert set(a) == {"training", "validation", "test"}
    assert [a[c].name for c in ("training", "validation", "test")] == ["iris-train", "iris-val", "iris-test"]
    assert a["training"].digest == b["training"].digest and a["validation"].digest == b["validation"].digest
    assert a["test"].digest != b["test"].digest
    assert a["training"].source_type == "local"
    assert json.loads(a["training"].source) == {"uri": str(tmp_path / "my.csv")}
    assert b["training"].source_type == "code"
    assert json.loads(b["training"].source) == {"tags": {"loader": "pipeline.data.table.load_table"}}
    assert json.loads(a["test"].profile)["features_shape"] == [12, 4]
    spec = json.loads(json.loads(a["test"].schema)["mlflow_tensorspec"]["features"])
    assert spec[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 4]}
