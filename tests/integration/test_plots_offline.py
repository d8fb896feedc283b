"""`dvc plots show` without internet: the real `dvc` CLI fills the project's template in a
temporary repository (dvc.yaml and .dvc/config copied, the plot files written here), and
headless Chromium, every request off this disk refused, draws every plot."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.tools import vega
from tests.conftest import ROOT
from tests.integration.browser import CHROMIUM_ARGS, SCREENSHOTS, chromium_path

pytestmark = pytest.mark.slow

EPOCHS = range(8)
PLOT_FILES = {
    # Both tasks' columns, so every chart has data (a real run fills one task's: the other's
    # charts are drawn empty).
    "history.csv": "epoch,train_loss,val_loss,train_acc,val_acc,train_rmse,val_rmse\n"
    + "".join(
        f"{e},{1 / (e + 1)},{1.1 / (e + 1)},{1 - 0.3 / (e + 1)},{1 - 0.35 / (e + 1)},{50 + 9 / (e + 1)},"
        f"{52 + 9 / (e + 1)}\n"
        for e in EPOCHS
    ),
    "regression.csv": "actual,predicted\n" + "".join(f"{100 + 7 * i},{104 + 6.5 * i}\n" for i in range(20)),
    # 3 classes, every fifth sample off by one
    "predictions.csv": "actual,predicted\n"
    + "".join(f"{i % 3},{(i + (i % 5 == 0)) % 3}\n" for i in range(30)),
    "calibration.csv": "confidence,accuracy\n0.35,0.30\n0.55,0.50\n0.75,0.72\n0.95,0.96\n",
    "sanity.csv": "layers_randomised,layer,rank_median,signed_rank_median,ssim_median\n"
    "0,none,1.0,1.0,1.0\n1,net.3,0.7,0.05,0.4\n2,net.0,0.66,0.0,0.42\n",
    "surrogate.csv": "depth,fidelity,tree_accuracy\n"
    + "".join(f"{d},{0.3 + 0.07 * d},{0.28 + 0.06 * d}\n" for d in range(1, 9)),
}

# Each plot's drawn chart: vega-embed puts a canvas (or, with the svg renderer, svg.marks) in the div.
DRAWN = "body > div[id] :is(canvas, svg.marks)"
CHARTS = """() => Array.from(document.querySelectorAll('body > div[id]')).map(d => {
    const c = d.querySelector('canvas, svg.marks');
    const r = c ? c.getBoundingClientRect() : {width: 0, height: 0};
    return {id: d.id, w: r.width, h: r.height};
})"""


def n_plots(dvc_yaml: dict[str, Any]) -> int:
    """Top-level plot definitions plus the plot outputs stages declare: DVC draws each."""
    stage_plots = sum(len(s.get("plots", [])) for s in dvc_yaml["stages"].values())
    return len(dvc_yaml.get("plots", [])) + stage_plots


@pytest.fixture(scope="module")
def plots_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plots")
    (root / ".dvc").mkdir()
    shutil.copy2(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copy2(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    vega.write_template(vega.template_path(root))
    (root / "artifacts" / "plots").mkdir(parents=True)
    for name, text in PLOT_FILES.items():
        (root / "artifacts" / "plots" / name).write_text(text)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (["git", "init", "-q"], ["dvc", "plots", "show"]):
        out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return root / "dvc_plots" / "index.html"


def test_plots_render_offline(plots_page: Path) -> None:
    from playwright.sync_api import Route, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    attempted: list[str] = []
    errors: list[str] = []

    def cut(route: Route) -> None:
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort("internetdisconnected")

    expected = n_plots(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    with sync_playwright() as p:
        # The dead proxy also stops whatever the browser itself would fetch outside the page.
        browser = p.chromium.launch(
            executable_path=chromium_path(), args=[*CHROMIUM_ARGS, "--proxy-server=127.0.0.1:9"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", cut)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(plots_page.as_uri(), wait_until="load")
            with contextlib.suppress(PlaywrightTimeoutError):  # the checks below say what is missing
                page.wait_for_function(
                    f"() => document.querySelectorAll('{DRAWN}').length >= {expected}", timeout=15_000
                )
            charts = page.evaluate(CHARTS)
            versions = page.evaluate(
                "() => [window.vega?.version, window.vegaLite?.version, window.vegaEmbed?.version]"
            )
            SCREENSHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "dvc-plots-offline.png"), full_page=True)
        finally:
            browser.close()

    assert attempted == [], f"requests off this disk: {attempted}"
    assert errors == [], errors
    assert len(charts) == expected, charts
    assert all(c["w"] > 50 and c["h"] > 50 for c in charts), charts
    # The majors dvc-render's Vega-Lite v5 specs are written for.
    assert [str(v).split(".")[0] for v in versions] == ["5", "5", "6"], versions
