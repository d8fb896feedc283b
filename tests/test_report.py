from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from pipeline.report import html as page_html
from pipeline.stages import report


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "a" and (a.get("href") or "").startswith("#"):
            self.links.append(str(a["href"])[1:])


def parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


def test_filters() -> None:
    assert page_html.fmt_pct(0.98333) == "98.3%"
    assert page_html.fmt_num(0.123456) == "0.1235"
    assert page_html.fmt_int(101770) == "101,770"
    assert page_html.fmt_sci(2.96e-06) == "2.96e-06"
    assert page_html.fmt_metric(float("nan")) == "—" and page_html.fmt_metric(0.98765) == "0.9877"


def test_png_size_and_dpi() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (31, 17)).save(buf, format="PNG", dpi=(150, 150))
    assert page_html.png_size(buf.getvalue()) == (31, 17)
    assert page_html.png_dpi(buf.getvalue()) == pytest.approx(150, abs=0.1)
    with pytest.raises(ValueError):
        page_html.png_size(b"GIF89a....................")


def test_both_pages_extend_one_layout() -> None:
    """The header, "at a glance" panel, contents and footer are written once, in layout.html.j2."""
    templates = Path(page_html.__file__).parent / "templates"
    for name in ("base.html.j2", "compare.html.j2"):
        source = (templates / name).read_text()
        assert source.startswith('{% extends "layout.html.j2" %}')
        assert not re.search(r"<(header|aside|nav|main|footer)\b", source), name


def test_section_figures_follow_the_registry(tmp_path: Path) -> None:
    from pipeline.plots import figures

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    for figure_id in ("ig_agreement", "beeswarm", "class_importance"):  # not in report order
        (tmp_path / f"{figure_id}.png").write_bytes(buf.getvalue())
    embedded = report.section_figures("explanation", {"explain": tmp_path})
    assert [f.id for f in embedded] == ["class_importance", "beeswarm", "ig_agreement"]
    assert embedded[0].caption == figures.spec("class_importance").caption


def test_report_has_every_section_and_decodable_images(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    html = Path(cfg.paths.report).read_text()
    page = parse(html)
    for sid, _ in report.SECTIONS:
        assert sid in page.ids
    assert set(page.links) <= page.ids
    assert len(page.images) >= 6
    for img in page.images:
        src = str(img["src"])
        assert src.startswith("data:image/png;base64,")
        decoded = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        decoded.load()
        # Shown at physical size: pixels x 96 / dpi (60 in the small run).
        assert abs(decoded.size[0] * 96 / 60 - int(str(img["width"]))) <= 1
        assert img["alt"]
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert results["train"]["run_id"] in html


def test_strings_from_data_and_config_are_escaped(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = small_run
    context = report.build_context(cfg)
    hostile = "<script>alert(1)</script>"
    context["title"] = hostile
    context["per_class"][0]["class"] = hostile
    context["config_yaml"] = hostile
    html = report.render_report(context)
    assert "<script>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3


def test_verdict_names_confusions_and_calibration() -> None:
    metrics = {"accuracy": 0.9, "n_test": 100, "macro_f1": 0.89, "ece": 0.15}
    confusions = [{"true": "8", "predicted": "1", "count": 3}]
    text = " ".join(report.verdict(metrics, confusions, {"additivity_max_error": 1e-6}))
    assert "90.0%" in text and "8 taken for 1 (3×)" in text
    assert "poorly calibrated" in text and "add up" in text
    text = " ".join(report.verdict({**metrics, "ece": 0.01}, [], {"additivity_max_error": 0.5}))
    assert "no mistakes" in text and "well calibrated" in text and "approximate" in text
    trust = {"additivity_max_error": 1e-6, "faithfulness_area": 0.01, "ig_spearman_median": 0.9}
    text = " ".join(report.verdict(metrics, confusions, trust))
    assert "faithfulness area 0.010" in text and "Do not trust it" in text


def test_configuration_shows_what_dvc_declares(small_run) -> None:  # type: ignore[no-untyped-def]
    """The Configuration section prints only config sections dvc.yaml declares as the report's params."""
    import yaml

    cfg, _ = small_run
    printed = yaml.safe_load(report.build_context(cfg)["config_yaml"])
    assert "paths" not in printed and "compare" not in printed
    assert {"report", "model", "explain", "visualize"} <= set(printed)
    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    declared = {p for p in stages["report"]["params"] if isinstance(p, str)}
    assert set(printed) <= declared, f"dvc.yaml's report stage misses params {set(printed) - declared}"


def test_strict_undefined_catches_missing_context() -> None:
    with pytest.raises(Exception, match="undefined"):
        report.render_report({"title": "x"})


def test_report_is_logged_to_the_run(small_run) -> None:  # type: ignore[no-untyped-def]
    import json

    from mlflow import MlflowClient

    from pipeline import layout

    cfg, _ = small_run
    run = json.loads(layout.run_file(cfg).read_text())
    client = MlflowClient(run["tracking_uri"])
    names = {a.path for a in client.list_artifacts(run["run_id"], "report")}
    assert names == {"report/index.html"}
    evaluated = {a.path for a in client.list_artifacts(run["run_id"], "evaluate")}
    assert "evaluate/confusion_matrix.png" in evaluated
    assert re.search(r"test_accuracy", " ".join(client.get_run(run["run_id"]).data.metrics))


def test_data_warnings_and_class_counts_per_split_reach_the_page(small_run) -> None:  # type: ignore[no-untyped-def]
    cfg, results = small_run
    context = report.build_context(cfg)
    counts = results["prepare"]["class_balance"]
    assert context["summary"]["splits"] == ["train", "val", "test"]
    assert context["summary"]["class_counts"][0] == (
        "0",
        [counts["train"][0], counts["val"][0], counts["test"][0]],
    )
    assert context["summary"]["warnings"] == []  # the digits' stratified splits share every class
    html = report.render_report(context)
    assert "Rows of each class per split" in html and "Data warning" not in html
    context["summary"]["warnings"] = ["Class '9' of the train split never occurs in the test split"]
    glance = report.render_report(context).split('class="glance"', 1)[1].split("</aside>", 1)[0]
    assert "Data warning:</strong> Class &#39;9&#39; of the train split never occurs" in glance
