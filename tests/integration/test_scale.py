"""Scaling out on the real engines: DDP through Lightning (gloo on CPU), Hydra multirun
and Optuna sweeps, and a real `mlflow server` as a shared tracking store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from pipeline import layout
from pipeline.nets import model
from tests.conftest import ROOT, make_config

pytestmark = pytest.mark.slow

QUIET = ["trainer.enable_progress_bar=false"]


def stage(name: str, *overrides: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a stage the way dvc.yaml does (`python -m pipeline <name>`)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", name, *overrides],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scale")
    stage("prepare", f"paths.prepare={folder / 'prep'}", cwd=folder)
    return folder


def runs_of(uri: str, experiment: str) -> list[Any]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    return list(client.search_runs([exp.experiment_id]))


def test_ddp_on_two_cpu_processes(prepared: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stage(
        "train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        f"paths.prepare={prepared / 'prep'}",
        f"tracking.uri={db}",
        *QUIET,
        cwd=tmp_path,
    )
    runs = runs_of(db, "glassnet")
    assert len(runs) == 1, "only rank 0 may create an MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "ddp" and run.data.params["trainer.devices"] == "2"
    assert len(MlflowClient(db).get_metric_history(run.info.run_id, "val_loss")) == 2
    history = (tmp_path / "artifacts/plots/history.csv").read_text().splitlines()
    assert len(history) == 1 + 2
    # Each rank saw half the batches: 1,257 train rows, batch 64, 2 ranks -> 10 steps per epoch.
    assert run.data.metrics["epoch"] == 1
    cfg = make_config(tmp_path, fast=False)
    assert model.load(layout.model_file(cfg)).net.arch["hidden_sizes"] == [128]


def test_hydra_multirun_makes_one_run_per_job_grouped_by_sweep(prepared: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stage(
        "train",
        "--multirun",
        "model.hidden_sizes=[16],[32]",
        "optim.lr=0.001,0.01",
        "trainer.max_epochs=1",
        f"paths.prepare={prepared / 'prep'}",
        f"tracking.uri={db}",
        *QUIET,
        cwd=tmp_path,
    )
    runs = runs_of(db, "glassnet")
    assert len(runs) == 4
    assert len({r.data.tags["sweep"] for r in runs}) == 1
    assert sorted(r.data.tags["sweep_job"] for r in runs) == ["0", "1", "2", "3"]
    combos = {(r.data.params["model.hidden_sizes"], r.data.params["optim.lr"]) for r in runs}
    assert combos == {("[16]", "0.001"), ("[16]", "0.01"), ("[32]", "0.001"), ("[32]", "0.01")}
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()
    # The comparison page ranks exactly this sweep's runs.
    sweep = runs[0].data.tags["sweep"]
    stage(
        "compare",
        "compare.metric=best_val_loss",
        "compare.higher_is_better=false",
        f"compare.filter=\"tags.sweep = '{sweep}'\"",
        f"tracking.uri={db}",
        cwd=tmp_path,
    )
    html = (tmp_path / "reports/compare.html").read_text()
    best = min(runs, key=lambda r: r.data.metrics["best_val_loss"])
    ranked = [
        line.split('data-run-id="')[1].split('"')[0] for line in html.splitlines() if 'data-run-id="' in line
    ]
    assert len(ranked) == 4 and ranked[0] == best.info.run_id


def test_optuna_sweep_three_trials(prepared: Path, tmp_path: Path) -> None:
    import yaml

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stage(
        "train",
        "--multirun",
        "+experiment=optuna_lr",
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=1",
        f"paths.prepare={prepared / 'prep'}",
        f"tracking.uri={db}",
        *QUIET,
        cwd=tmp_path,
    )
    runs = runs_of(db, "glassnet")
    assert len(runs) == 3
    results = list((tmp_path / "artifacts/multirun").rglob("optimization_results.yaml"))
    assert len(results) == 1
    best = yaml.safe_load(results[0].read_text())
    losses = [r.data.metrics["best_val_loss"] for r in runs]
    assert best["best_value"] == pytest.approx(min(losses), rel=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with an SQLite backend and its own artifact root."""
    port = _free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
    ]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[
                -2000:
            ]
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _api(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_pipeline_against_a_tracking_server(mlflow_server: str, tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    work = tmp_path / "work"
    work.mkdir()
    small = [
        *QUIET,
        "trainer.max_epochs=2",
        "explain.n_samples=16",
        "explain.n_background=16",
        "report.dpi=50",
    ]
    for name in ("prepare", "train", "evaluate", "explain", "visualize", "report", "publish"):
        stage(name, *small, cwd=work, env=env)
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()

    exps = _api(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=glassnet")
    exp_id = exps["experiment"]["experiment_id"]
    runs = _api(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
    assert len(runs) == 1
    run = runs[0]
    metrics = {m["key"] for m in run["data"]["metrics"]}
    assert {"val_loss", "test_accuracy", "shap_additivity_max_error"} <= metrics
    run_id = run["info"]["run_id"]
    report = _api(mlflow_server, f"/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=report")
    assert [f["path"] for f in report["files"]] == ["report/index.html"]
    models = _api(mlflow_server, "/api/2.0/mlflow/logged-models/search", {"experiment_ids": [exp_id]})
    assert [m["info"]["source_run_id"] for m in models["models"]] == [run_id]
    html = (work / "reports/index.html").read_text()
    assert f"{mlflow_server}/#/experiments/{exp_id}/runs/{run_id}" in html  # a link, not a command


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_preset_trains_on_the_gpu(prepared: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stage(
        "train",
        "trainer=gpu",
        "trainer.max_epochs=2",
        f"paths.prepare={prepared / 'prep'}",
        f"tracking.uri={db}",
        *QUIET,
        cwd=tmp_path,
    )
    run = runs_of(db, "glassnet")[0]
    assert run.data.params["trainer.accelerator"] == "gpu"
    assert run.data.params["trainer.precision"] == "bf16-mixed"
    assert run.info.status == "FINISHED"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_cnn_trains_on_the_gpu_and_explains(prepared: Path, tmp_path: Path) -> None:
    """The convolutional network, fitted on the GPU in mixed precision, then explained."""
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = (f"paths.prepare={prepared / 'prep'}", f"tracking.uri={db}", "model=cnn", *QUIET)
    stage("train", "trainer=gpu", "trainer.max_epochs=2", *common, cwd=tmp_path)
    run = runs_of(db, "glassnet")[0]
    assert run.data.params["trainer.accelerator"] == "gpu" and run.info.status == "FINISHED"
    assert run.data.params["model._target_"] == "pipeline.nets.model.CNN"
    stage("explain", "explain.n_samples=16", "explain.n_background=16", *common, cwd=tmp_path)
    explained = json.loads((tmp_path / "artifacts/metrics/explain.json").read_text())
    assert (
        explained["path"] == "batched DeepLIFT (pipeline.explain.deep_lift)"
        and explained["additivity_max_error"] < 1e-3
    )
