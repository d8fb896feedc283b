"""The offline template for `dvc plots show`: every script inline, DVC's placeholders in place,
the libraries the majors dvc-render's specs need, and the project's copy current."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from dvc_render.html import HTML
from dvc_render.vega import VegaRenderer
from dvc_render.vega_templates import TEMPLATES

from pipeline.tools import vega
from tests.conftest import ROOT


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.srcs.append(dict(attrs).get("src"))


@pytest.fixture(scope="module")
def template() -> str:
    return vega.offline_template()


def test_every_script_is_inline(template: str) -> None:
    parser = Scripts()
    parser.feed(template)
    assert parser.srcs == [None] * len(vega.SCRIPTS)  # no src at all, so no http(s):// one
    assert "cdn.jsdelivr" not in template


def test_dvc_fills_it_and_drops_its_cdn_scripts(template: str) -> None:
    assert template.count("{plot_divs}") == 1 and template.count("{refresh_tag}") == 1
    assert "{scripts}" not in template
    page = HTML(template).with_scripts(VegaRenderer.SCRIPTS).with_element('<div id="p"></div>').embed()
    assert '<div id="p"></div>' in page and "{plot_divs}" not in page
    assert "cdn.jsdelivr" not in page
    assert page.index("vegaEmbed") < page.index('<div id="p">')  # libraries load before the divs use them


def test_libraries_match_dvc_renders_specs() -> None:
    # dvc-render writes Vega-Lite v5 specs; the bundled build is Vega-Lite 5 (vega 5, vega-embed 6).
    assert {t.DEFAULT_CONTENT["$schema"] for t in TEMPLATES} == {
        "https://vega.github.io/schema/vega-lite/v5.json"
    }
    assert vega.SCRIPTS == ("vega5.js", "vega-lite5.js", "vega-embed6.js")
    assert all(len(js) > 50_000 for js in vega.read_scripts())


@pytest.mark.parametrize("bad", ["a</script>b", "a<!--b", "x='{plot_divs}'"])
def test_refuses_a_script_that_cannot_be_inlined(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot inline"):
        vega.render_template([bad], source="test")


def test_write_is_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "plots.html"
    assert vega.write_template(path) is True
    first = path.read_bytes()
    assert vega.write_template(path) is False
    assert path.read_bytes() == first == vega.offline_template().encode()


def test_project_template_is_configured_and_current(template: str) -> None:
    path = vega.template_path(ROOT)
    assert path == ROOT / ".dvc" / "plots.html"
    assert path.is_file(), f"{path} is missing: run `make setup` (it runs python -m pipeline.tools.vega)"
    assert path.read_text(encoding="utf-8") == template, f"{path} is stale: run `make setup`"
