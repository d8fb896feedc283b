"""The page ``dvc plots show`` writes, readable offline: Vega, Vega-Lite and vega-embed inlined.

    python -m pipeline.tools.vega      # writes the template .dvc/config names (`make setup` runs it)

DVC's own template loads the three libraries from a CDN, so without internet its page is
blank. ``plots.html_template`` in ``.dvc/config`` points DVC at the template written here
instead: DVC fills ``{plot_divs}`` (and ``{refresh_tag}``) and, as the template has no
``{scripts}``, drops its CDN ``<script>`` tags. The libraries are the upstream minified
builds shipped by the ``django-js-lib-vega-embed`` wheel (vega 5, vega-lite 5, vega-embed 6:
the majors dvc-render's Vega-Lite v5 specs are written for); nothing is downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path

from pipeline.io import write_text

log = logging.getLogger(__name__)

DIST = "django-js-lib-vega-embed"
PACKAGE = "js_lib_vega_embed"
# In load order: vega-lite needs vega, vega-embed needs both.
SCRIPTS = ("vega5.js", "vega-lite5.js", "vega-embed6.js")
# What DVC's HTML.embed replaces by plain str.replace, anywhere in the template.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
"""
BODY = """</head>
<body>
    {plot_divs}
</body>
</html>
"""


def read_scripts() -> list[str]:
    """The three libraries' source, in load order, from the installed package."""
    folder = resources.files(PACKAGE) / "static" / PACKAGE
    return [(folder / name).read_text(encoding="utf-8") for name in SCRIPTS]


def render_template(scripts: Sequence[str], *, source: str) -> str:
    """DVC's page layout with each script inlined in ``<head>`` (the plot divs call
    ``vegaEmbed`` as they are parsed, so the libraries must come first)."""
    blocks = []
    for js in scripts:
        # Inside an inline <script>, "</script" ends it early and "<!--" changes how the
        # parser reads the rest; DVC would also rewrite its placeholders inside the code.
        # None occurs in the builds today: refuse a build where one does rather than patch it.
        bad = [s for s in ("</script", "<!--", *PLACEHOLDERS) if s in js.lower()]
        if bad:
            raise ValueError(f"cannot inline a script containing {bad}")
        blocks.append(f"    <script>\n{js.rstrip()}\n    </script>\n")
    return f"{HEAD}    <!-- {source} (python -m pipeline.tools.vega) -->\n{''.join(blocks)}{BODY}"


def template_path(root: Path) -> Path:
    """Where DVC reads the template: ``plots.html_template``, relative to ``.dvc/`` as DVC resolves it."""
    from dvc.config import Config

    dvc_dir = root / ".dvc"
    name = Config(dvc_dir=str(dvc_dir))["plots"].get("html_template")
    if not name:
        raise ValueError(f"{dvc_dir / 'config'} sets no plots.html_template")
    return dvc_dir / name


def offline_template() -> str:
    """The template from the installed package."""
    return render_template(
        read_scripts(), source=f"Vega, Vega-Lite and vega-embed from {DIST} {metadata.version(DIST)}"
    )


def write_template(path: Path) -> bool:
    """Write the template atomically; False (and the file untouched) when it is already current."""
    text = offline_template()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = template_path(Path.cwd())
    written = write_template(target)
    log.info("%s %s (%d kB)", "wrote" if written else "up to date:", target, target.stat().st_size // 1000)
