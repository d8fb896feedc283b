"""The publish stage: what evaluate / explain / visualize recorded reaches MLflow in one process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from pipeline import io, layout
from pipeline.config import Config
from pipeline.errors import MissingInputError
from pipeline.stages import publish
from pipeline.tracking import records, runs


def _record(run_id: str, stage: str, metrics: dict[str, float], artifacts: list[str]) -> dict[str, Any]:
    return {"run_id": run_id, "artifact_path": stage, "metrics": metrics, "artifacts": artifacts}


def test_collect_merges_records_of_this_run_and_skips_stale_ones(caplog: pytest.LogCaptureFixture) -> None:
    records = {
        "evaluate": _record("r1", "evaluate", {"test_accuracy": 0.9}, ["a/cm.png", "a/eval.json"]),
        "explain": _record("r0", "explain", {"shap_faithfulness_area": 0.5}, ["b/maps.png"]),
        "visualize": _record("r1", "visualize", {"viz_n_parameters": 10.0}, ["c/net.png"]),
    }
    metrics, artifacts = publish.collect(records, "r1")
    assert metrics == {"test_accuracy": 0.9, "viz_n_parameters": 10.0}
    assert artifacts == [
        (Path("a/cm.png"), "evaluate"),
        (Path("a/eval.json"), "evaluate"),
        (Path("c/net.png"), "visualize"),
    ]
    assert "Not publishing explain" in caplog.text and "r0" in caplog.text


def test_record_drops_non_finite_metrics(tmp_path: Path) -> None:
    run = runs.RunInfo("sqlite:///x.db", "e", "1", "r1", "")
    records.write(tmp_path / "mlflow.json", run, {"a": 1.0, "b": float("nan")}, [tmp_path / "f.png"], "x")
    saved = json.loads((tmp_path / "mlflow.json").read_text())
    assert saved["metrics"] == {"a": 1.0}
    assert saved["run_id"] == "r1" and saved["artifact_path"] == "x"
    assert saved["artifacts"] == [str(tmp_path / "f.png")]


def test_small_run_reached_mlflow_through_publish(small_run: tuple[Config, dict[str, Any]]) -> None:
    cfg, results = small_run
    summary = json.loads(Path(cfg.paths.published).read_text())
    assert summary == results["publish"]
    run = runs.load_run(layout.run_file(cfg))
    logged = MlflowClient(run.tracking_uri).get_run(run.run_id).data.metrics
    assert set(summary["metrics"]) <= set(logged)
    assert {m.split("_")[0] for m in summary["metrics"]} == {"test", "shap", "viz"}
    assert "report/index.html" in summary["artifacts"]
    assert logged["test_accuracy"] == pytest.approx(results["evaluate"]["metrics"]["accuracy"])


def _fresh_run(folder: Path, cfg: Config) -> runs.RunInfo:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("publish-test", artifact_location=(folder / "mlruns").as_uri())
    run_id = client.create_run(experiment).info.run_id
    info = runs.RunInfo(uri, "publish-test", experiment, run_id, "")
    io.write_json(layout.run_file(cfg), info.to_dict())
    return info


def test_a_missing_file_is_named_and_nothing_is_published(make_cfg: Any, tmp_path: Path) -> None:
    cfg = make_cfg()
    run = _fresh_run(tmp_path, cfg)
    figure = tmp_path / "artifacts/evaluate/figures/cm.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"png")
    evaluate_record = layout.mlflow_record(cfg.paths.evaluate)
    records.write(evaluate_record, run, {"test_accuracy": 0.5}, [figure], "evaluate")
    gone = tmp_path / "artifacts/explain/figures/maps.png"
    records.write(layout.mlflow_record(cfg.paths.explain), run, {"shap_x": 1.0}, [gone], "explain")
    with pytest.raises(MissingInputError, match=r"maps\.png.*dvc repro"):
        publish.run(cfg)
    assert not Path(cfg.paths.published).exists()
    assert MlflowClient(run.tracking_uri).get_run(run.run_id).data.metrics == {}

    gone.parent.mkdir(parents=True)
    gone.write_bytes(b"png")
    summary = publish.run(cfg)  # visualize and report have not run: published without them
    assert summary["metrics"] == ["shap_x", "test_accuracy"]
    assert summary["artifacts"] == ["evaluate/cm.png", "explain/maps.png"]
    client = MlflowClient(run.tracking_uri)
    assert client.get_run(run.run_id).data.metrics == {"test_accuracy": 0.5, "shap_x": 1.0}
    assert [a.path for a in client.list_artifacts(run.run_id, "explain")] == ["explain/maps.png"]


def test_a_run_missing_from_the_store_says_to_retrain(make_cfg: Any, tmp_path: Path) -> None:
    cfg = make_cfg()
    run = _fresh_run(tmp_path, cfg)
    io.write_json(layout.run_file(cfg), {**run.to_dict(), "run_id": "0" * 32})
    with pytest.raises(MissingInputError, match=r"0{32}.*not in the store.*--force train"):
        publish.run(cfg)


def test_the_run_holds_every_stages_params(small_run: tuple[Config, dict[str, Any]]) -> None:
    """Train logs the sections it reads, publish those of the later stages: the comparison page has all."""
    cfg, results = small_run
    params = MlflowClient(str(cfg.tracking.uri)).get_run(results["train"]["run_id"]).data.params
    assert params["model.hidden_sizes"] == "[128]" and params["seed"] == "42"  # train's
    assert params["explain.n_samples"] == "24" and params["visualize.n_units"] == str(
        cfg.visualize.n_units
    )  # publish's
    assert not [key for key in params if key.startswith(("paths.", "compare."))]
    assert set(results["publish"]["params"]) <= set(params)


def test_a_changed_param_of_a_published_run_is_reported_not_logged(
    make_cfg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg()
    run = _fresh_run(tmp_path, cfg)
    publish.run(cfg)
    publish.run(make_cfg("visualize.n_units=7"))  # MLflow never changes a logged param
    assert MlflowClient(run.tracking_uri).get_run(run.run_id).data.params["visualize.n_units"] == str(
        cfg.visualize.n_units
    )
    assert "keeps visualize.n_units=" in caplog.text and "7" in caplog.text
