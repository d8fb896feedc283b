"""The stage's worker process (pipeline.parallel): started early by the dispatcher, taken by the stage."""

from __future__ import annotations

import os
import sys

import pytest

from pipeline import parallel


def imported(name: str) -> bool:
    """Run in the worker: has it imported ``name``?"""
    return name in sys.modules


def test_a_worker_started_early_is_the_one_the_stage_takes() -> None:
    parallel.start_early("evaluate")
    with parallel.stage_pool("evaluate") as pool:
        worker = pool.submit(os.getpid).result(timeout=120)
        # It imported what WORKERS lists for the stage before any task arrived.
        assert pool.submit(imported, "pipeline.plots.evaluation").result(timeout=60)
    assert worker != os.getpid()
    with parallel.stage_pool("evaluate") as fresh:  # none left early: a new worker
        assert fresh.submit(os.getpid).result(timeout=120) not in {worker, os.getpid()}


def test_a_stage_without_a_worker_starts_none_early() -> None:
    parallel.start_early("report")
    with pytest.raises(KeyError):
        parallel.stage_pool("report")


def test_every_worker_belongs_to_a_stage() -> None:
    from pipeline.__main__ import STAGES

    assert set(parallel.WORKERS) <= set(STAGES)
