"""The learning task, classification or regression: everything that differs between the two.

prepare decides the task (``task`` in config, or inferred from the target) and writes it into
``summary.json``; every later stage asks the task object (``task.of(summary)``) instead of
branching on its name. Each task lives in one module (``classification``, ``regression``): its
metrics, losses, history columns, example and error picking, figure lists, captions and wording.
For regression the network has one output, in the target's own units (see the train stage), and the
summary names the target (``target_name``) and how it was scaled (``target_mean``, ``target_std``).
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


class Kind(str, enum.Enum):
    """The ``task`` config key's values (``auto``: inferred by prepare, see conf/config.yaml)."""

    classification = "classification"
    regression = "regression"


CLASSIFICATION = Kind.classification.value
REGRESSION = Kind.regression.value


class Task:
    """What the stages ask of a task; ``Classification`` and ``Regression`` answer.

    ``summary``: the prepared data's summary (prepare's ``summary.json``)."""

    name: ClassVar[str]
    regression: ClassVar[bool]

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    @property
    def target_name(self) -> str:
        """What the target is called: the regression target's column, else "class"."""
        return "class"

    # -- train --

    # -- evaluate --

    # -- explain --

    # -- visualize --

    # -- report --


def fmt(value: float) -> str:
    """A value in the target's units, for captions and titles: 4 significant digits."""
    return f"{value:.4g}"


def name_of(summary: dict[str, Any]) -> str:
    """The task of a prepared dataset (summaries written before regression existed: classification)."""
    return str(summary.get("task") or CLASSIFICATION)


def of(summary: dict[str, Any]) -> Task:
    """The task object of a prepared dataset."""
    from pipeline.task.classification import Classification
    from pipeline.task.regression import Regression

    return Regression(summary) if name_of(summary) == REGRESSION else Classification(summary)


def is_regression(summary: dict[str, Any]) -> bool:
    return name_of(summary) == REGRESSION


def target_name(summary: dict[str, Any]) -> str:
    """What the target is called: the regression target's column, else "class"."""
    return of(summary).target_name
