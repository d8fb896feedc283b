"""A stage imports only what it uses: prepare and report never load torch, Lightning, SHAP or
MLflow; only train and publish talk to MLflow (evaluate, explain and visualize hand their results
to publish as records); no stage draws through pyplot's global state. Each stage runs in a fresh
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
    "prepare": ("pytorch_lightning", "lightning_fabric", "shap", "torch", "mlflow"),
    "report": ("pytorch_lightning", "lightning_fabric", "shap", "torch", "mlflow", "matplotlib.pyplot"),
    "evaluate": ("pytorch_lightning", "shap", "mlflow", "matplotlib.pyplot"),
    "explain": ("pytorch_lightning", "mlflow"),
    "visualize": ("pytorch_lightning", "shap", "mlflow", "matplotlib.pyplot"),
    "publish": ("pytorch_lightning", "shap", "torch"),
}

RUN = """
import json, sys
from pathlib import Path
from tests.conftest import make_config
from pipeline.stages import {stage}
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
