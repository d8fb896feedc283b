"""A stage imports only what it uses: prepare and report never load Lightning or SHAP (3 s and
1.5 s of every run), only publish loads MLflow in the stage process (~2 s with its store; train
leaves it to its process-pool worker), and no stage loads seaborn. Each stage runs in a fresh
interpreter and the modules it loaded are listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config
from tests.conftest import ROOT

NEVER = {
    "prepare": ("pytorch_lightning", "lightning_fabric", "shap", "torch", "mlflow", "seaborn"),
    "report": ("pytorch_lightning", "lightning_fabric", "shap", "torch", "mlflow", "seaborn"),
    "evaluate": ("pytorch_lightning", "shap", "mlflow", "seaborn", "matplotlib.pyplot", "scipy.stats"),
    "explain": ("pytorch_lightning", "mlflow", "seaborn", "scipy.stats"),
    # sklearn (1 s) and t-SNE run in visualize's helper process, beside the stage's own work.
    "visualize": ("pytorch_lightning", "shap", "mlflow", "seaborn", "matplotlib.pyplot", "sklearn"),
    "publish": ("pytorch_lightning", "shap", "torch", "seaborn"),
}

RUN = """
import json, sys
from pathlib import Path
from tests.conftest import make_config
from pipeline import {stage}
{stage}.run(make_config(Path({folder!r})))
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(stage: str, folder: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", RUN.format(stage=stage, folder=str(folder))],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent), "HOME": str(folder)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    # Each module and its parents: "matplotlib.pyplot" also counts as "matplotlib".
    return {".".join(m.split(".")[: i + 1]) for m in modules for i in range(m.count(".") + 1)}


def test_prepare_imports_only_what_it_uses(tmp_path: Path) -> None:
    loaded = loaded_by("prepare", tmp_path)
    assert not loaded & set(NEVER["prepare"]), sorted(loaded & set(NEVER["prepare"]))


@pytest.mark.parametrize("stage", ["evaluate", "explain", "visualize", "report", "publish"])
def test_stage_imports_only_what_it_uses(stage: str, small_run: tuple[Config, dict[str, Any]]) -> None:
    cfg, _ = small_run
    folder = Path(cfg.paths.prepare).parents[1]  # <folder>/artifacts/prepare
    loaded = loaded_by(stage, folder)
    assert not loaded & set(NEVER[stage]), sorted(loaded & set(NEVER[stage]))


def test_train_leaves_mlflow_to_its_pool_worker(tmp_path: Path) -> None:
    loaded_by("prepare", tmp_path)
    loaded = loaded_by("train", tmp_path)
    assert "pytorch_lightning" in loaded  # the stage itself trains...
    assert "mlflow" not in loaded  # ...and its process-pool worker logs the run (pipeline.train.run)
    assert (tmp_path / "artifacts" / "train" / "run.json").is_file()
