"""The pipeline as a user runs it: the real `dvc` CLI in a fresh git repository,
the real SQLite MLflow store, the report on disk."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow import MlflowClient
from PIL import Image

from pipeline.nets import model
from tests.conftest import ROOT
from tests.dvc_truth import dep_path
from tests.stages.test_report import parse

pytestmark = pytest.mark.slow

PROJECT_FILES = [
    "conf",
    "pipeline",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvc/config",
    ".dvc/plots.html",
    ".dvcignore",
    ".gitignore",
]
SMALL = {
    "trainer": {"max_epochs": 3, "enable_progress_bar": False},
    "explain": {"n_samples": 16, "n_background": 16, "n_examples": 4},
    "visualize": {"n_units": 16, "tsne_max_samples": 150},
}


def sh(*args: str, cwd: Path, **extra_env: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **extra_env,
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    # Output to a file, not a pipe: `dvc queue start` leaves daemons (DVC's queue workers) that
    # inherit its streams, and reading a pipe would wait for them to exit, not for the command.
    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600)
        out.seek(0)
        text = out.read()
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{text[-6000:]}"
    return text


def _shrink(params: dict, small: dict) -> None:  # type: ignore[type-arg]
    for key, value in small.items():
        if isinstance(value, dict):
            _shrink(params[key], value)
        else:
            params[key] = value


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project in a new git repository, with small settings in params.yaml."""
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        src, dst = ROOT / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    params = yaml.safe_load((root / "params.yaml").read_text())
    _shrink(params, SMALL)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # `dvc exp run` recomposes params.yaml from conf/: shrink there too.
    with open(root / "conf" / "config.yaml", "a") as fh:
        fh.write("\n" + yaml.safe_dump(SMALL))
    sh("git", "init", "-q", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=root)
    # Every process reports each module it imports (stderr, through DVC's output): see
    # test_every_imported_module_is_a_dependency.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # One stream, so each import line comes after the "Running stage" line of its stage.
    done = subprocess.run(
        ["dvc", "repro"],
        cwd=root,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out[-5000:]
    (root.parent / "repro-imports.txt").write_text(out)
    return root


def test_repro_produces_every_output(repo: Path) -> None:
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                assert (repo / path).exists(), path
    leftovers = {p.name for p in repo.iterdir()} - {
        *PROJECT_FILES,
        ".dvc",
        ".git",
        "dvc.lock",
        "artifacts",
        "reports",
        "mlflow.db",
        "mlruns",
    }
    assert not leftovers, f"litter in the project: {leftovers}"
    assert not (repo / "outputs").exists() and not (repo / ".hydra").exists()


def test_every_imported_module_is_a_dependency(repo: Path) -> None:
    """What each stage's processes (its pool's worker included) really imported, read from
    `-X importtime` lines between DVC's "Running stage" lines, is in that stage's deps."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    imported: dict[str, set[str]] = {}
    stage = None
    for line in (repo.parent / "repro-imports.txt").read_text().splitlines():
        started = re.match(r"Running stage '(\w+)'", line)
        if started:
            stage = started.group(1)
            imported[stage] = set()
        found = re.match(r"import time:.*\|\s*(pipeline(?:\.\w+)*)$", line)
        if found and stage:
            imported[stage].add(found.group(1))
    assert set(imported) == set(stages), imported.keys()
    for name, modules in imported.items():
        assert f"pipeline.stages.{name}" in modules, name
        missing = sorted(dep_path(m) for m in modules if dep_path(m) not in stages[name]["deps"])
        assert not missing, f"stage {name!r} imported {missing}, which dvc.yaml does not list"


def test_editing_a_module_reruns_the_stages_that_import_it(repo: Path) -> None:
    fast_deep = repo / "pipeline" / "explain" / "fast_deep.py"
    original = fast_deep.read_text()
    fast_deep.write_text(original + "\n# an edit\n")
    try:
        status = json.loads(sh("dvc", "status", "--json", cwd=repo))
        assert "explain" in status and "train" not in status and "evaluate" not in status
        assert any("pipeline/explain/fast_deep.py" in json.dumps(entry) for entry in status["explain"])
    finally:
        fast_deep.write_text(original)


def test_dvc_metrics_show_reports_accuracy(repo: Path) -> None:
    metrics = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo))
    flat = json.dumps(metrics)
    assert '"accuracy"' in flat and '"additivity_max_error"' in flat and '"best_val_loss"' in flat
    assert '"layer1_dead_fraction"' in flat


def test_dvc_plots_show_renders(repo: Path, tmp_path: Path) -> None:
    sh("dvc", "plots", "show", "-o", str(tmp_path / "plots"), cwd=repo)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "Confusion matrix (test)" in html and "Loss per epoch" in html


def test_mlflow_run_has_everything(repo: Path) -> None:
    run = json.loads((repo / "artifacts/train/run.json").read_text())
    assert run["tracking_uri"] == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    client = MlflowClient(run["tracking_uri"])
    mlrun = client.get_run(run["run_id"])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["trainer.max_epochs"] == "3"
    assert len(client.get_metric_history(run["run_id"], "val_loss")) == 3
    for key in ("test_accuracy", "test_macro_f1", "test_ece", "test_log_loss", "shap_additivity_max_error"):
        assert key in mlrun.data.metrics
    assert mlrun.data.tags["git_commit"] == sh("git", "rev-parse", "HEAD", cwd=repo).strip()
    assert {a.path for a in client.list_artifacts(run["run_id"], "report")} == {"report/index.html"}
    # The logged model loads and predicts like the stage's own copy.
    mlflow.set_tracking_uri(run["tracking_uri"])
    logged = mlflow.pytorch.load_model(run["model_uri"])
    net = model.load(repo / "artifacts/train/model.pt")
    x = torch.randn(3, 64)
    assert torch.allclose(logged(x), net(x), atol=1e-5)
    # Artifacts live beside the database, in the project, not in a temporary copy.
    assert str(repo.resolve() / "mlruns") in mlrun.info.artifact_uri


def test_report_sections_and_images(repo: Path) -> None:
    html = (repo / "reports/index.html").read_text()
    page = parse(html)
    assert {"summary", "training", "evaluation", "explanation", "configuration"} <= page.ids
    assert {"network", "activations", "errors"} <= page.ids
    assert page.images
    for img in page.images:
        data = base64.b64decode(str(img["src"]).split(",", 1)[1])
        Image.open(io.BytesIO(data)).load()


def test_second_repro_runs_nothing(repo: Path) -> None:
    out = sh("dvc", "repro", cwd=repo)
    assert "Running stage" not in out
    assert "up to date" in out


def test_changing_report_title_does_not_retrain(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["report"]["title"] = "Another title"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(sh("dvc", "status", "--json", cwd=repo))
    assert set(status) == {"report"}
    sh("git", "checkout", "params.yaml", cwd=repo)


def test_exp_run_override_changes_the_trained_network(repo: Path) -> None:
    sh("dvc", "exp", "run", "-S", "model.hidden_sizes=[32]", cwd=repo)
    net = model.load(repo / "artifacts/train/model.pt")
    assert net.net.arch["hidden_sizes"] == [32]
    assert net.net.net[0].out_features == 32
    assert yaml.safe_load((repo / "params.yaml").read_text())["model"]["hidden_sizes"] == [32]
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo))
    assert "hidden_sizes" in json.dumps(shown)


def test_queued_experiments_log_to_the_workspace_store(repo: Path) -> None:
    import time

    sh("dvc", "exp", "run", "--queue", "-S", "model.hidden_sizes=[24],[40]", cwd=repo)
    sh("dvc", "queue", "start", "-j", "2", cwd=repo)  # two at once against one SQLite store
    deadline = time.time() + 480
    while True:
        status = sh("dvc", "queue", "status", cwd=repo)
        if "Queued" not in status and "Running" not in status:
            break
        assert time.time() < deadline, status
        time.sleep(3)
    assert status.count("Success") >= 2, status
    # Both runs are in the project's own store, not in DVC's temporary copies.
    client = MlflowClient(f"sqlite:///{repo.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("glassnet")
    runs = client.search_runs([exp.experiment_id], "tags.dvc_exp_name != ''")
    widths = {r.data.params["model.hidden_sizes"] for r in runs if "test_accuracy" in r.data.metrics}
    assert {"[24]", "[40]"} <= widths
    for r in runs:
        assert str(repo.resolve() / "mlruns") in r.info.artifact_uri
    shown = sh("dvc", "exp", "show", "--csv", cwd=repo)
    assert "[24]" in shown and "[40]" in shown


def test_exp_run_with_a_users_own_network(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module of the user's, on PYTHONPATH, trained and explained through `dvc exp run`."""
    from tests.nets.test_networks import MYNETS

    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "mynets.py").write_text(MYNETS)
    overrides = ["model=custom", "model._target_=mynets.TinyNet", "+model.width=8"]
    sh("dvc", "exp", "run", *[a for o in overrides for a in ("-S", o)], cwd=repo, PYTHONPATH=str(folder))
    run = json.loads((repo / "artifacts/train/run.json").read_text())
    assert run["arch"] == {
        "_target_": "mynets.TinyNet",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "width": 8,
    }
    assert "TinyNet (mynets.TinyNet, width=8)" in (repo / "reports/index.html").read_text()
    mlrun = MlflowClient(run["tracking_uri"]).get_run(run["run_id"])
    assert mlrun.info.status == "FINISHED" and "test_accuracy" in mlrun.data.metrics
    assert mlrun.data.params["model._target_"] == "mynets.TinyNet"
    # The MLflow model loads (its class from the user's module) and predicts like the stage's copy.
    monkeypatch.syspath_prepend(str(folder))
    mlflow.set_tracking_uri(run["tracking_uri"])
    logged = mlflow.pytorch.load_model(run["model_uri"])
    net = model.load(repo / "artifacts/train/model.pt")
    assert type(net.net).__name__ == "TinyNet"
    x = torch.randn(3, 64)
    assert torch.allclose(logged(x), net(x), atol=1e-5)


def test_exp_run_on_a_regression_dataset(repo: Path, tmp_path: Path) -> None:
    """`dvc exp run -S data=diabetes`: every stage on a numeric target, the MLflow run ranked by
    test_rmse, the DVC scatter of predicted against actual, the MLflow model predicting in the
    target's units."""
    sh("dvc", "exp", "run", "-S", "data=diabetes", cwd=repo)
    run = json.loads((repo / "artifacts/train/run.json").read_text())
    assert run["task"] == "regression"
    metrics = json.loads((repo / "artifacts/metrics/evaluate.json").read_text())
    assert metrics["rmse"] < metrics["baseline_rmse"] and metrics["r2"] > 0
    rows = (repo / "artifacts/plots/regression.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + metrics["n_test"]
    mlrun = MlflowClient(run["tracking_uri"]).get_run(run["run_id"])
    assert mlrun.data.tags["task"] == "regression"
    assert mlrun.data.metrics["test_rmse"] == pytest.approx(metrics["rmse"])
    assert "test_accuracy" not in mlrun.data.metrics
    mlflow.set_tracking_uri(run["tracking_uri"])
    logged = mlflow.pytorch.load_model(run["model_uri"])
    x = torch.zeros(4, 10)  # the scaled features' mean: a prediction near the target's mean
    assert 80 < float(logged(x).mean()) < 220
    html = (repo / "reports/index.html").read_text()
    assert "test RMSE (progression)" in html and "The largest errors" in html
    out = tmp_path / "plots"
    sh("dvc", "plots", "show", "-o", str(out), cwd=repo)
    assert "Predicted against actual (test, regression)" in (out / "index.html").read_text()
    sh("git", "checkout", "params.yaml", cwd=repo)
