"""Stage 6: render one self-contained HTML report of the run.

    python -m pipeline report report.title="My network"

Reads every earlier stage's outputs into the templates' context (``pipeline.report.context``; the
at-a-glance sentences and the trust summary: ``pipeline.report.glance``), embeds the figures they
drew in the order and with the captions of ``pipeline.plots.figures``, and renders ``templates/``
with Jinja2 (autoescaped, CSS inline, figures as data: URIs; see ``pipeline.report.html``); the
publish stage logs the page to the run's MLflow record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import io
from pipeline.config import Config
from pipeline.plots.figures import SECTIONS
from pipeline.report.context import build_context, section_figures
from pipeline.report.glance import trust_summary
from pipeline.report.html import render_page

log = logging.getLogger(__name__)

# Re-exported for callers that import them from the stage (tests/stages/test_explain.py); they live in
# pipeline.report.
__all__ = ["SECTIONS", "build_context", "render_report", "run", "section_figures", "trust_summary"]


def render_report(context: dict[str, Any]) -> str:
    """Pure: context in, HTML out; the task's own section titles (``section_titles``) replace the
    registry's."""
    titles = context.get("section_titles", {})
    return render_page(
        "base.html.j2", [(sid, titles.get(sid, title)) for sid, title in SECTIONS], "sections", context
    )


def run(cfg: Config) -> Path:
    """Read the stages' outputs into the context, render it, write the page."""
    context = build_context(cfg)
    html = render_report(context)
    out = Path(cfg.paths.report)
    io.write_text(out, html)
    log.info("Report written to %s (%.0f kB)", out.resolve(), len(html.encode()) / 1024)
    return out


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
