"""Shared fixtures: composed, shrunk configs whose outputs and MLflow store live in a
temporary folder, and one small end-to-end run shared by the stage tests."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

matplotlib.use("Agg")

from pipeline.config import Config, PathsConfig, to_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small and fast: a few epochs on CPU, a few explained samples.
FAST = [
    "trainer.max_epochs=3",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "explain.n_samples=24",
    "explain.n_background=20",
    "explain.n_examples=4",
    "report.dpi=60",
    "visualize.n_units=16",
    "visualize.tsne_max_samples=150",
    "visualize.n_errors=6",
]


def compose_conf(overrides: list[str] | tuple[str, ...] = ()) -> Any:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def isolated_overrides(folder: Path) -> list[str]:
    """Every path and the MLflow store moved under ``folder``."""
    paths = [f"paths.{f.name}={folder / f.default}" for f in dataclasses.fields(PathsConfig)]  # type: ignore[operator]
    return [*paths, f"tracking.uri=sqlite:///{folder / 'mlflow.db'}"]


def make_config(folder: Path, *overrides: str, fast: bool = True) -> Config:
    return to_config(compose_conf([*isolated_overrides(folder), *(FAST if fast else []), *overrides]))


@pytest.fixture
def make_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Config]:
    monkeypatch.chdir(tmp_path)
    return lambda *overrides, fast=True: make_config(tmp_path, *overrides, fast=fast)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, dict[str, Any]]]:
    """Every stage runs once, in-process, on the digits with small settings."""
    from pipeline.stages import evaluate, explain, prepare, publish, report, train, visualize

    folder = tmp_path_factory.mktemp("run")
    old = os.getcwd()
    os.chdir(folder)
    try:
        cfg = make_config(folder)
        results = {
            "prepare": prepare.run(cfg),
            "train": train.run(cfg),
            "evaluate": evaluate.run(cfg),
            "explain": explain.run(cfg),
            "visualize": visualize.run(cfg),
            "report": report.run(cfg),
            "publish": publish.run(cfg),
        }
        yield cfg, results
    finally:
        os.chdir(old)


@pytest.fixture(scope="session")
def regression_trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, dict[str, Any]]]:
    """The diabetes table (a regression) prepared and trained, in-process, with small settings;
    the later stages are left to the test (see regression_run)."""
    from pipeline.stages import prepare, train

    folder = tmp_path_factory.mktemp("regression")
    old = os.getcwd()
    os.chdir(folder)
    try:
        cfg = make_config(folder, "data=diabetes", "trainer.max_epochs=8")
        yield cfg, {"prepare": prepare.run(cfg), "train": train.run(cfg)}
    finally:
        os.chdir(old)


@pytest.fixture(scope="session")
def regression_run(
    regression_trained: tuple[Config, dict[str, Any]],
) -> Iterator[tuple[Config, dict[str, Any]]]:
    """Every stage once on the diabetes regression (after regression_trained), in-process."""
    from pipeline.stages import evaluate, explain, publish, report, visualize

    cfg, results = regression_trained
    old = os.getcwd()
    os.chdir(Path(cfg.paths.prepare).parents[1])
    try:
        for name, stage in (
            ("evaluate", evaluate),
            ("explain", explain),
            ("visualize", visualize),
            ("report", report),
            ("publish", publish),
        ):
            results[name] = stage.run(cfg)
        yield cfg, results
    finally:
        os.chdir(old)


@pytest.fixture(scope="session")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path, list[str]]]:
    """Three real runs with different hidden sizes, then the comparison page."""
    from pipeline.stages import evaluate, explain, prepare, publish, train
    from pipeline.tools import compare

    folder = tmp_path_factory.mktemp("compare")
    old = os.getcwd()
    os.chdir(folder)
    try:
        base = make_config(folder, "trainer.max_epochs=2")
        prepare.run(base)
        run_ids = []
        for width in (8, 32, 64):
            cfg = make_config(
                folder, "trainer.max_epochs=2", f"model.hidden_sizes=[{width}]", f"tracking.run_name=h{width}"
            )
            run_ids.append(train.run(cfg)["run_id"])
            evaluate.run(cfg)
            explain.run(cfg)
            publish.run(cfg)
        cfg = make_config(folder)
        yield cfg, compare.run(cfg), run_ids
    finally:
        os.chdir(old)


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    import matplotlib.pyplot as plt

    np.random.seed(0)
    yield
    plt.close("all")


def toy_summary(keys: dict[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
    """A prepared summary's keys for a test that builds a task by hand: ``keys`` and ``more`` over
    the few a summary cannot do without (pipeline.data.summary.Summary's required fields)."""
    required = {
        "dataset": "toy",
        "n_features": 1,
        "n_classes": 1,
        "class_names": ["y"],
        "feature_names": ["x"],
    }
    return {**required, **(keys or {}), **more}
