"""How a stage process ends: fast (no interpreter teardown) but with every output and log line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

QUIET = ["hydra/job_logging=stdout"]


def _prepare(folder: Path, *python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python, "-m", "pipeline.stages.prepare", f"paths.prepare={folder / 'prep'}"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_stage_ends_with_its_outputs_and_log_written(tmp_path: Path) -> None:
    done = _prepare(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "prep" / "data" / "X_train.npy").is_file()
    assert "Prepared digits" in done.stdout + done.stderr  # the last log line was flushed


def test_a_failing_stage_keeps_its_exit_code_and_message(tmp_path: Path) -> None:
    failed = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.prepare", "data.test_size=2.0"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 2
    assert "data.test_size" in failed.stdout + failed.stderr


def test_a_profiled_stage_still_writes_its_profile(tmp_path: Path) -> None:
    # cProfile (like coverage) writes its file at interpreter exit, which a fast exit would skip.
    done = _prepare(tmp_path, "-m", "cProfile", "-o", str(tmp_path / "prepare.prof"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "prepare.prof").stat().st_size > 0
