"""The default settings must train a good digits classifier (scikit-learn's
MLPClassifier reaches about 0.97 on this data)."""

from __future__ import annotations

import pytest

from pipeline.stages import evaluate, prepare, train


@pytest.mark.slow
def test_default_config_reaches_95_percent(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg("trainer.enable_progress_bar=false", fast=False)
    prepare.run(cfg)
    train.run(cfg)
    result = evaluate.run(cfg)
    assert result["metrics"]["accuracy"] >= 0.95
