"""HTML shared by the report and the comparison page: the Jinja2 environment, its filters, figure embedding.

    page = render_page("base.html.j2", SECTIONS, "sections", context)

Both pages extend ``templates/layout.html.j2`` (header, "at a glance" panel, table of
contents, one ``<section>`` per entry of ``sections`` filled from ``<folder>/<id>.html.j2``,
footer). Figures are inlined as data: URIs so a page is one self-contained file.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from pipeline.report.formats import FILTERS


@dataclass(frozen=True)
class ReportFigure:
    id: str
    title: str
    caption: str
    alt: str
    src: str
    width: int
    height: int


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def png_dpi(data: bytes) -> float | None:
    """Resolution from a PNG's pHYs chunk (matplotlib writes it), or None."""
    at = data.find(b"pHYs")
    if at < 0:
        return None
    per_x, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    return per_x * 0.0254 if unit == 1 else None


CSS_DPI = 96  # a CSS pixel is 1/96 inch


def embed_figure(path: Path, title: str, caption: str, alt: str) -> ReportFigure:
    """Inline a PNG; it is shown at its physical size, so a high-DPI render stays sharp on dense screens."""
    data = path.read_bytes()
    width, height = png_size(data)
    scale = CSS_DPI / (png_dpi(data) or CSS_DPI)
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return ReportFigure(path.stem, title, caption, alt, src, round(width * scale), round(height * scale))


def make_env() -> Environment:
    """The one Jinja2 environment of both pages: autoescaped, strict about missing context, the
    number formats of pipeline.report.formats as filters."""
    env = Environment(
        loader=PackageLoader("pipeline.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def render_page(
    template: str, sections: Sequence[tuple[str, str]], folder: str, context: dict[str, Any]
) -> str:
    """Pure: render ``template`` (which extends layout.html.j2) with one section per (id, title)."""
    toc = [{"id": sid, "title": title, "template": f"{folder}/{sid}.html.j2"} for sid, title in sections]
    return make_env().get_template(template).render(sections=toc, **context)
