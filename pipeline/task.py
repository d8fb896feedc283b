"""The learning task, classification or regression, as the prepared data's summary records it.

prepare decides the task (``task`` in config, or inferred from the target) and writes it into
``summary.json``; every later stage asks this module rather than testing names itself. For
regression the network has one output, in the target's own units (see the train stage), and the
summary names the target (``target_name``) and how it was scaled (``target_mean``, ``target_std``).
"""

from __future__ import annotations

import enum
from typing import Any


class Task(str, enum.Enum):
    classification = "classification"
    regression = "regression"


CLASSIFICATION = Task.classification.value
REGRESSION = Task.regression.value


def of(summary: dict[str, Any]) -> str:
    """The task of a prepared dataset (summaries written before regression existed: classification)."""
    return str(summary.get("task") or CLASSIFICATION)


def is_regression(summary: dict[str, Any]) -> bool:
    return of(summary) == REGRESSION


def target_name(summary: dict[str, Any]) -> str:
    """What the target is called: the regression target's column, else "class"."""
    return str(summary.get("target_name") or "class") if is_regression(summary) else "class"


def fmt(value: float) -> str:
    """A value in the target's units, for captions and titles: 4 significant digits."""
    return f"{value:.4g}"
