"""The classification task: everything the stages do differently for it (see pipeline.task)."""

from __future__ import annotations

from pipeline.task import Task


class Classification(Task):
    name = "classification"
    regression = False

    # -- train --

    # -- evaluate --

    # -- explain --

    # -- visualize --

    # -- report --
