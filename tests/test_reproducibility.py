"""Same config and seed on CPU: the same test metrics and the same SHAP values, twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline import layout
from pipeline.stages import evaluate, explain, prepare, train
from tests.conftest import make_config


def _run(folder: Path) -> tuple[dict[str, float], np.ndarray, dict[str, str]]:
    old = os.getcwd()
    os.chdir(folder)
    try:
        cfg = make_config(folder, "trainer.max_epochs=4")
        prepare.run(cfg)
        train.run(cfg)
        metrics = evaluate.run(cfg)["metrics"]
        explain.run(cfg)
        values = np.load(layout.shap_file(cfg))["values"]
        run = json.loads(layout.run_file(cfg).read_text())
        return metrics, values, run
    finally:
        os.chdir(old)


@pytest.mark.slow
def test_two_runs_are_identical(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    m1, v1, run = _run(tmp_path / "a")
    m2, v2, _ = _run(tmp_path / "b")
    assert m1 == m2
    assert np.array_equal(v1, v2)
    # ... and the run records what is needed to reproduce it.
    for key in ("git_commit", "git_dirty", "data_md5", "version.torch", "version.glassnet", "dvc_stage"):
        assert key in run, key
    from mlflow import MlflowClient

    client = MlflowClient(run["tracking_uri"])
    assert "config.yaml" in {a.path for a in client.list_artifacts(run["run_id"])}
    assert client.get_logged_model(run["model_uri"].removeprefix("models:/")).source_run_id == run["run_id"]
    assert client.get_run(run["run_id"]).data.tags["data_md5"] == run["data_md5"]
