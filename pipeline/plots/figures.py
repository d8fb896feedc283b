"""The figure registry: every figure of the report, in report order, read from ``figures.yaml``.

    from pipeline.plots import figures
    spec = figures.spec("confusion_matrix")      # title, caption, alt text, stage, section
    fig = figures.draw_function(spec.id)(cm=cm, labels=labels)

One table says which stage draws a figure (its PNG is ``<stage figure folder>/<id>.png``),
with which function, where the report shows it and what its caption teaches. Stages draw
what the table lists; the report embeds, section by section and in this order, the
figures it finds. The table is data (titles, captions and alt texts are prose), so ``draw``
is a ``"module:function"`` name, resolved when a figure is drawn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STAGES = ("evaluate", "explain", "visualize")


@dataclass(frozen=True)
class FigureSpec:
    id: str
    stage: str  # "evaluate" | "explain" | "visualize": whose figure folder holds <id>.png
    section: str  # the report section it appears in (an id of SECTIONS)
    title: str
    caption: str  # teaches the reader how to read the figure
    alt: str
    draw: str  # "module:function" returning a matplotlib Figure; see draw_function
    # The caption when the task is regression (pipeline.task), where the figure is drawn for both
    # tasks and the classification caption speaks of classes; "" = the same caption for both.
    regression_caption: str = ""
    regression_title: str = ""

    def caption_for(self, task: str) -> str:
        return self.regression_caption if task == "regression" and self.regression_caption else self.caption

    def title_for(self, task: str) -> str:
        return self.regression_title if task == "regression" and self.regression_title else self.title


def _load() -> tuple[tuple[tuple[str, str], ...], tuple[FigureSpec, ...]]:
    data = yaml.safe_load(REGISTRY.read_text(encoding="utf-8"))
    sections = tuple((str(s["id"]), str(s["title"])) for s in data["sections"])
    return sections, tuple(FigureSpec(**entry) for entry in data["figures"])


REGISTRY = Path(__file__).with_name("figures.yaml")
# The report's sections, in page order: (id, title); and every figure, in report order.
SECTIONS, FIGURES = _load()
_BY_ID = {figure.id: figure for figure in FIGURES}


def spec(figure_id: str) -> FigureSpec:
    """The registry entry of ``figure_id``; an unknown id raises a ValueError naming the known ones."""
    try:
        return _BY_ID[figure_id]
    except KeyError:
        raise ValueError(
            f"Unknown figure id {figure_id!r}; the registry (pipeline/plots/figures.yaml) has: "
            f"{', '.join(_BY_ID)}"
        ) from None


def draw_function(figure_id: str) -> Callable[..., Figure]:
    """The function that draws ``figure_id``, imported now (this is where matplotlib gets loaded)."""
    module, _, name = spec(figure_id).draw.partition(":")
    function: Callable[..., Figure] = getattr(importlib.import_module(module), name)
    return function


def in_section(section: str) -> list[FigureSpec]:
    """The figures of one report section, in report order; an unknown section raises a ValueError."""
    known = [sid for sid, _ in SECTIONS]
    if section not in known:
        raise ValueError(f"Unknown report section {section!r}; the sections are: {', '.join(known)}")
    return [figure for figure in FIGURES if figure.section == section]


def of_stage(stage: str) -> list[FigureSpec]:
    """The figures one stage draws, in report order."""
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; figures are drawn by: {', '.join(STAGES)}")
    return [figure for figure in FIGURES if figure.stage == stage]


__all__ = ["FIGURES", "SECTIONS", "STAGES", "FigureSpec", "draw_function", "in_section", "of_stage", "spec"]
