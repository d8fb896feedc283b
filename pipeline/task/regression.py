"""The regression task: everything the stages do differently for it (see pipeline.task)."""

from __future__ import annotations

from pipeline.task import Task


class Regression(Task):
    name = "regression"
    regression = True

    @property
    def target_name(self) -> str:
        """The regression target's column."""
        return str(self.summary.get("target_name") or "class")

    # -- train --

    # -- evaluate --

    # -- explain --

    # -- visualize --

    # -- report --
