"""pipeline.helper: a stage's second process runs calls in order and reports their errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.helper import Helper, HelperError
from tests.conftest import ROOT


def wait_for(path: str, limit: float) -> str:
    """In the helper: wait until ``path`` exists (the test creates it), at most ``limit`` s."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "gave up"
        time.sleep(0.01)
    return "released"


def total(a: np.ndarray) -> float:
    return float(a.sum())


def fail(message: str) -> None:
    raise ConfigError(message)


def die() -> None:
    os._exit(3)


def loaded(name: str) -> bool:
    return name in sys.modules


def test_calls_run_in_order_and_big_arguments_do_not_block_the_stage(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    big = np.arange(2_000_000, dtype=np.float64)  # 16 MB: far past a pipe's buffer
    with Helper() as helper:
        first = helper.submit(wait_for, str(gate), 60.0)
        # The helper is busy until the gate opens. If sending the array waited for the helper to
        # read it, the gate would open only after the helper gave up.
        second = helper.submit(total, big)
        third = helper.submit(sorted, [3, 1, 2])
        gate.touch()
        assert third.result() == [1, 2, 3]  # results may be collected in any order
        assert first.result() == "released"
        assert second.result() == float(big.sum())


def test_an_error_in_a_call_is_raised_with_its_type(tmp_path: Path) -> None:
    with Helper() as helper:
        bad = helper.submit(fail, "explain.n_samples is too big")
        good = helper.submit(total, np.ones(3))
        with pytest.raises(ConfigError, match="n_samples is too big"):
            bad.result()
        assert good.result() == 3.0  # the helper goes on after a failed call


def test_a_helper_that_dies_is_reported() -> None:
    with pytest.raises(HelperError, match="exit code 3"), Helper() as helper:
        helper.submit(die).result()


def test_warm_modules_are_imported_in_the_helper_only() -> None:
    with Helper(warm=("colorsys",)) as helper:
        assert helper.submit(loaded, "colorsys").result()
        assert not helper.submit(loaded, "torch").result()  # a fresh interpreter, not a fork


def test_stage_modules_import_without_torch() -> None:
    """The helper re-imports the stage's __main__ module: torch there would cost it ~1 s to start."""
    code = "import sys, pipeline.evaluate, pipeline.explain, pipeline.visualize;print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"


def test_an_error_in_the_stage_stops_a_busy_helper() -> None:
    with pytest.raises(RuntimeError, match="stage failed"), Helper() as helper:
        helper.submit(wait_for, "/nonexistent/gate", 300.0)  # busy for minutes unless stopped
        raise RuntimeError("stage failed")
    assert not helper._process.is_alive()
