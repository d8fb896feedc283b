"""The figure registry: complete entries, drawing functions that resolve, the report in its order."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import layout
from pipeline.plots import figures


def test_every_figure_has_text_a_section_a_stage_and_a_drawing_function() -> None:
    ids = [f.id for f in figures.FIGURES]
    assert len(ids) == len(set(ids))
    sections = {sid for sid, _ in figures.SECTIONS}
    for f in figures.FIGURES:
        assert f.title and f.alt and len(f.caption) > 100, f.id
        assert f.section in sections and f.stage in figures.STAGES, f.id
        assert callable(figures.draw_function(f.id)), f.draw


def test_registry_order_is_the_reports_section_order() -> None:
    order = [sid for sid, _ in figures.SECTIONS]
    positions = [order.index(f.section) for f in figures.FIGURES]
    assert positions == sorted(positions)
    assert [f.id for f in figures.in_section("training")] == [
        "training_curves",
        "gradient_norms",
        "loss_line",
    ]
    assert [f.id for f in figures.in_section("errors")] == ["error_gallery", "grad_cam_errors"]
    assert figures.in_section("summary") == []
    assert [f.id for f in figures.of_stage("evaluate")] == [
        "training_curves",
        "predicted_vs_actual",  # the three regression figures (the classification ones are not drawn)
        "residuals_vs_predicted",
        "residual_distribution",
        "confusion_matrix",
        "per_class",
        "reliability",
    ]


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'confusion'.*confusion_matrix"):
        figures.spec("confusion")
    with pytest.raises(ValueError, match="'explanations'.*explanation"):
        figures.in_section("explanations")
    with pytest.raises(ValueError, match="'report'.*visualize"):
        figures.of_stage("report")


def test_the_registry_and_the_report_import_no_plotting_code() -> None:
    code = "import sys, pipeline.plots.figures, pipeline.stages.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stages_draw_registry_figures_and_the_report_shows_them_in_order(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = small_run
    drawn = set()
    for stage in figures.STAGES:
        names = {p.stem for p in layout.figure_dir(getattr(cfg.paths, stage)).glob("*.png")}
        assert names <= {f.id for f in figures.of_stage(stage)}, stage
        drawn |= names
    html = Path(cfg.paths.report).read_text()
    shown = re.findall(r'<figure id="fig-([a-z_]+)"', html)
    assert shown == [f.id for f in figures.FIGURES if f.id in drawn]
