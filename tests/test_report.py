from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from pipeline import report


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
    assert report.fmt_pct(0.98333) == "98.3%"
    assert report.fmt_num(0.123456) == "0.1235"
    assert report.fmt_int(101770) == "101,770"
    assert report.fmt_sci(2.96e-06) == "2.96e-06"


def test_png_size_and_dpi() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (31, 17)).save(buf, format="PNG", dpi=(150, 150))
    assert report.png_size(buf.getvalue()) == (31, 17)
    assert report.png_dpi(buf.getvalue()) == pytest.approx(150, abs=0.1)
    with pytest.raises(ValueError):
        report.png_size(b"GIF89a....................")


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
