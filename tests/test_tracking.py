"""pipeline.tracking against a real SQLite store, its train-stage operations run in a process-pool
worker as the train stage runs them (pipeline.parallel)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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

from pipeline import io, layout, model, parallel
from pipeline.tracking import location, models, records, runs, store
from pipeline.tracking.logger import PoolLogger


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """One worker for the module, as the train stage opens it (its MLflow import paid once)."""
    with parallel.process_pool(warm=("mlflow",), niceness=10) as executor:
        yield executor


def _start(pool: ProcessPoolExecutor, folder: Path, **kwargs: Any) -> runs.Started:
    tags = {"dataset": "digits", "mlflow.source.name": "train"}
    params = {"optim.lr": 0.01, "seed": 3}
    return pool.submit(runs.start, _uri(folder), "glassnet", "w1", tags, params, **kwargs).result()


def _status(folder: Path, run_id: str) -> str:
    return str(MlflowClient(_uri(folder)).get_run(run_id).info.status)


@pytest.mark.parametrize("model_format", ["pickle", "pt2"])
def test_a_run_from_start_to_finish(pool: ProcessPoolExecutor, tmp_path: Path, model_format: str) -> None:
    uri = _uri(tmp_path)
    started = _start(pool, tmp_path)
    assert not started.resumed and started.warning is None and started.killed is None
    pool.submit(models.warm_up)
    logger = PoolLogger(pool, uri, started.run_id, started.experiment_id)
    logger.log_metrics({"val_loss": 0.5, "epoch": 0}, step=0)
    logger.log_metrics({"val_loss": 0.25, "epoch": 1}, step=1)
    logger.wait()
    torch.manual_seed(0)
    net = model.MLP(6, 3, [4], "relu", 0.0).eval()
    model.save(net, tmp_path / "model.pt")
    example = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    logged = pool.submit(models.log_saved, uri, started.run_id, tmp_path / "model.pt", example, model_format)
    pool.submit(
        runs.finish, uri, started.run_id, {"best_val_loss": 0.25}, {"config.yaml": "seed: 3\n"}
    ).result()

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
    loaded = mlflow.pytorch.load_model(logged.result())
    x = torch.from_numpy(example)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)
    if model_format == "pickle":  # glassnet's code travels with the model: the whole package
        folder = Path(mlflow.artifacts.download_artifacts(logged.result(), dst_path=str(tmp_path / "m")))
        assert (folder / "code" / "pipeline" / "model.py").is_file()


# Evaluated in the worker: the names of the modules it has imported (eval is a builtin, so the
# task pickles by reference and imports nothing of its own).
MODULES = "set(__import__('sys').modules)"


def test_warm_up_leaves_the_first_model_logging_nothing_to_import(tmp_path: Path) -> None:
    """The train stage's worker runs warm_up before the fit, so that logging the model after it
    (which the stage waits for) does not first import mlflow.pyfunc, Hydra or GitPython."""
    uri = _uri(tmp_path)
    net = model.MLP(6, 3, [4], "relu", 0.0).eval()
    model.save(net, tmp_path / "model.pt")
    example = np.zeros((2, 6), dtype=np.float32)
    with parallel.process_pool(warm=("mlflow",)) as fresh:  # a new worker, as each train stage's
        started = _start(fresh, tmp_path)
        fresh.submit(models.warm_up).result()
        before = fresh.submit(eval, MODULES).result()
        fresh.submit(models.log_saved, uri, started.run_id, tmp_path / "model.pt", example).result()
        after = fresh.submit(eval, MODULES).result()
    # What is left are a few small modules of MLflow (its tracing, on OpenTelemetry: ~0.1 s);
    # not mlflow.pyfunc and its pydantic models, Hydra (pipeline.model.build) or GitPython
    # (MLflow's run context), ~0.5 s together.
    imported = after - before
    packages = {name.split(".")[0] for name in imported}
    assert "mlflow.pyfunc" in before and "mlflow.pyfunc" not in imported
    assert packages <= {"mlflow", "torch", "opentelemetry"}, sorted(packages)


def test_a_failed_run_is_marked(pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    started = _start(pool, tmp_path)
    pool.submit(runs.terminate, _uri(tmp_path), started.run_id, "FAILED").result()
    assert _status(tmp_path, started.run_id) == "FAILED"


def test_a_run_left_running_by_a_dead_stage_is_killed_by_the_next_start(
    pool: ProcessPoolExecutor, tmp_path: Path
) -> None:
    dead = _start(pool, tmp_path)  # its stage was SIGKILLed: nobody marked the run
    finished = _start(pool, tmp_path)
    pool.submit(runs.terminate, _uri(tmp_path), finished.run_id, "FINISHED").result()
    after = _start(pool, tmp_path, stale=dead.run_id)
    assert after.killed == dead.run_id and _status(tmp_path, dead.run_id) == "KILLED"
    assert _start(pool, tmp_path, stale=finished.run_id).killed is None  # only a RUNNING one
    assert _status(tmp_path, finished.run_id) == "FINISHED"
    assert _start(pool, tmp_path, stale="0" * 32).killed is None  # not in this store: nothing to do


def test_the_train_stage_kills_the_run_a_dead_stage_left_running(
    make_cfg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline import prepare, train

    cfg = make_cfg("trainer.max_epochs=1")
    prepare.run(cfg)
    uri = str(cfg.tracking.uri)
    experiment = store.ensure_experiment(uri, "glassnet")
    dead = store.client(uri).create_run(experiment).info.run_id
    partial = layout.checkpoint_dir(cfg).with_name("checkpoints.partial")
    io.write_text(partial / "run_id", dead)  # what a SIGKILLed train stage leaves behind
    with caplog.at_level(logging.WARNING, logger="pipeline.train"):
        result = train.run(cfg)
    assert _status(tmp_path, dead) == "KILLED" and f"MLflow run {dead}" in caplog.text
    assert _status(tmp_path, result["run_id"]) == "FINISHED"


def test_resume_continues_the_run_or_warns_and_starts_a_new_one(
    pool: ProcessPoolExecutor, tmp_path: Path
) -> None:
    first = _start(pool, tmp_path)
    pool.submit(runs.terminate, _uri(tmp_path), first.run_id, "KILLED").result()
    again = _start(pool, tmp_path, resume=first.run_id, stale=first.run_id)
    assert again.run_id == first.run_id and again.resumed and again.killed is None
    assert _status(tmp_path, first.run_id) == "RUNNING"
    other = _start(pool, tmp_path, resume="0123456789abcdef0123456789abcdef")
    assert other.run_id != first.run_id and not other.resumed
    assert other.warning is not None and "is not in" in other.warning


def test_an_unusable_store_fails_with_a_clear_error(pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    bad = f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}"
    with pytest.raises(runs.TrackingError, match=r"MLflow tracking failed.*file"):
        pool.submit(runs.start, bad, "glassnet", None, {}, {}).result()
    (tmp_path / "mlflow.db").write_text("not a database")
    with pytest.raises(runs.TrackingError, match="not a database"):
        pool.submit(runs.start, _uri(tmp_path), "glassnet", None, {}, {}).result()


def test_an_error_while_logging_an_epoch_surfaces(pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    started = _start(pool, tmp_path)
    logger = PoolLogger(pool, _uri(tmp_path), started.run_id, started.experiment_id)
    logger.log_metrics({"bad#name": 1.0}, step=0)  # MLflow refuses '#' in a metric name
    with pytest.raises(Exception, match="bad#name"):
        logger.wait()


def test_a_worker_that_died_stops_the_fit_with_a_clear_error(tmp_path: Path) -> None:
    with parallel.process_pool() as lost:
        logger = PoolLogger(lost, _uri(tmp_path), "r", "e")
        with pytest.raises(BrokenProcessPool):
            lost.submit(os._exit, 1).result()  # the worker dies (as when killed)
        logger.log_metrics({"val_loss": 1.0}, step=0)
        logger.finalize("failed")  # after a failed fit: best effort, the fit's error is raised
        # The next step hands the queued ones to the pool (or, at the latest, wait does).
        with pytest.raises(runs.TrackingError, match="MLflow worker process stopped"):
            logger.log_metrics({"val_loss": 1.0}, step=1)
            logger.wait()


def test_steps_logged_while_the_worker_is_busy_go_as_one_task(
    pool: ProcessPoolExecutor, tmp_path: Path
) -> None:
    uri = _uri(tmp_path)
    started = _start(pool, tmp_path)
    logger = PoolLogger(pool, uri, started.run_id, started.experiment_id)
    busy = pool.submit(time.sleep, 1.0)  # the worker is busy (as while it imports MLflow)
    logger.log_metrics({"val_loss": 1.0}, step=0)
    logger.log_metrics({"train_loss": 1.5}, step=0)  # the same step: one batch
    logger.log_metrics({"val_loss": 0.5}, step=1)  # step 0 is sent: the worker had no metrics task
    for epoch in range(2, 6):
        logger.log_metrics({"val_loss": 1.0 / (epoch + 1)}, step=epoch)
    assert not busy.done() and len(logger.pending) == 1 and [q[0] for q in logger.queued] == [1, 2, 3, 4]
    logger.finalize("success")  # step 5 closed; steps 1-5 go as one task
    assert len(logger.pending) == 2 and logger.queued == []
    logger.wait()
    client = MlflowClient(uri)
    history = sorted(client.get_metric_history(started.run_id, "val_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(6)]
    assert [m.step for m in client.get_metric_history(started.run_id, "train_loss")] == [0]


def test_log_steps_splits_at_mlflows_batch_limit(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    run_id = store.client(uri).create_run(store.ensure_experiment(uri, "glassnet")).info.run_id
    steps = [(step, 1000 + step, {f"m{k}": float(step * k) for k in range(3)}) for step in range(400)]
    runs.log_steps(uri, run_id, steps)  # 1,200 metrics: over MLflow's 1,000 a request
    history = store.client(uri).get_metric_history(run_id, "m2")
    assert len(history) == 400 and {(m.step, m.value, m.timestamp) for m in history} == {
        (s, 2.0 * s, 1000 + s) for s in range(400)
    }


def test_the_logger_logs_on_rank_zero_only(
    pool: ProcessPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = PoolLogger(pool, "sqlite:///unused.db", "r", "e")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger.log_metrics({"val_loss": 1.0}, step=0)
    assert logger.pending == [] and logger.version == "r" and logger.name == "mlflow"


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


def test_the_splits_are_logged_as_dataset_inputs(pool: ProcessPoolExecutor, tmp_path: Path) -> None:
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
        run_id = _start(pool, tmp_path).run_id
        digests = inputs.split_digests(provenance.file_md5s(folder))
        args = (_uri(tmp_path), run_id, folder, name, source, "pipeline.datasets.load_table", digests)
        pool.submit(inputs.log_splits, *args).result()
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
    assert json.loads(b["training"].source) == {"tags": {"loader": "pipeline.datasets.load_table"}}
    assert json.loads(a["test"].profile)["features_shape"] == [12, 4]
    spec = json.loads(json.loads(a["test"].schema)["mlflow_tensorspec"]["features"])
    assert spec[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 4]}
