from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from pipeline.report import context as report_context
from pipeline.report import formats, glance
from pipeline.report import html as page_html
from pipeline.stages import report
from pipeline.task.classification import Classification
from pipeline.task.regression import Regression
from tests.conftest import ROOT, toy_summary


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
    assert formats.fmt_pct(0.98333) == "98.3%"
    assert formats.fmt_num(0.123456) == "0.1235"
    assert formats.fmt_int(101770) == "101,770"
    assert formats.fmt_sci(2.96e-06) == "2.96e-06"
    assert formats.fmt_metric(float("nan")) == "—" and formats.fmt_metric(0.98765) == "0.9877"
    assert set(page_html.make_env().filters) >= set(formats.FILTERS)


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


def test_templates_ask_the_task_instead_of_branching_on_it() -> None:
    """No template tests which task it renders: the task supplies the wording, and a part whose
    structure differs (tables, paragraphs of other numbers) is the task's own partial, <task>/<part>."""
    templates = Path(page_html.__file__).parent / "templates"
    for path in templates.rglob("*.j2"):
        tags = re.findall(r"{%-?\s*(?:if|elif)\b([^%]*)%}", path.read_text())
        assert not [t for t in tags if re.search(r"\b(regression|classification|task)\b", t)], path
    parts = {
        part
        for path in (templates / "sections").glob("*.j2")
        for part in re.findall(r'{% include task ~ "/([\w.]+)"', path.read_text())
    }
    assert parts == {"evaluation.html.j2", "errors.html.j2", "separation.html.j2", "surrogate.html.j2"}
    for kind in ("classification", "regression"):
        assert {p.name for p in (templates / kind).glob("*.j2")} == parts, kind


def test_section_figures_follow_the_registry(tmp_path: Path) -> None:
    from pipeline.plots import figures

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    for figure_id in ("ig_agreement", "beeswarm", "class_importance"):  # not in report order
        (tmp_path / f"{figure_id}.png").write_bytes(buf.getvalue())
    embedded = report_context.section_figures("explanation", {"explain": tmp_path})
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
    context = report_context.build_context(cfg)
    hostile = "<script>alert(1)</script>"
    context["title"] = hostile
    context["per_class"][0]["class"] = hostile
    context["config_yaml"] = hostile
    # The task's wording carries the target's name, a column name from the user's data.
    named = Regression(toy_summary({"task": "regression", "target_name": hostile}))
    context["explained_output"] = named.explained_output
    context["best_validation"] = named.best_validation({"best_val_rmse": 1.0})
    html = report.render_report(context)
    assert "<script>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5


def test_verdict_names_confusions_and_calibration() -> None:
    t = Classification(toy_summary({"n_classes": 10}))
    metrics = {"accuracy": 0.9, "n_test": 100, "macro_f1": 0.89, "ece": 0.15}
    confusions = [{"true": "8", "predicted": "1", "count": 3}]
    evaluation = {"metrics": metrics, "top_confusions": confusions}
    text = " ".join(glance.verdict(t, evaluation, {"additivity_max_error": 1e-6}))
    assert "90.0%" in text and "8 taken for 1 (3×)" in text
    assert "poorly calibrated" in text and "add up" in text
    calibrated = {"metrics": {**metrics, "ece": 0.01}, "top_confusions": []}
    text = " ".join(glance.verdict(t, calibrated, {"additivity_max_error": 0.5}))
    assert "no mistakes" in text and "well calibrated" in text and "approximate" in text
    trust = {"additivity_max_error": 1e-6, "faithfulness_area": 0.01, "ig_spearman_median": 0.9}
    text = " ".join(glance.verdict(t, evaluation, trust))
    assert "faithfulness area 0.010" in text and "Do not trust it" in text


def test_regression_verdict_speaks_in_the_target_units_and_shares_the_checks() -> None:
    """A regression's glance: its errors against predicting the mean, its largest error, a bias; the
    sentences on the explanation's checks are the classification's, with the task's wording."""
    t = Regression(toy_summary({"task": "regression", "target_name": "progression", "target_mean": 150.0}))
    metrics = {"n_test": 89, "mae": 40.0, "rmse": 50.0, "baseline_rmse": 75.0, "r2": 0.45, "bias": 9.0}
    largest = [{"row": 7, "actual": 300.0, "predicted": 150.0, "error": 150.0}]
    trust = {"additivity_max_error": 1e-6, "faithfulness_area": 0.4, "ig_spearman_median": 0.9}
    checks = {
        "sanity": {"verdict": "The explanation depends on the weights."},
        "surrogate": {"surrogate_depth": 3, "surrogate_fidelity_r2": 0.81},
    }
    sentences = glance.verdict(t, {"metrics": metrics, "largest_errors": largest}, trust, checks)
    text = " ".join(sentences)
    assert "predictions of progression are off by 40 on average" in text and "R² 0.450" in text
    assert "Its largest error: test row 7, actual 300, predicted 150 (too low by 150)." in text
    assert "too low on average (mean residual 9)" in text
    assert sentences[-3:] == [
        "Explanation checks: additivity gap 1.0e-06, faithfulness area 0.400, agreement with Integrated "
        "Gradients 0.90. Trust it: all three checks pass clearly.",
        "The explanation depends on the weights.",
        "A regression tree of depth 3 imitates the network with R² 0.81 on the test samples.",
    ]
    reading = glance.trust_summary(trust, t.removal_effect)["readings"]["faithfulness"]
    assert reading.startswith("removing the features it ranks first raises the error")
    assert "hurts accuracy" in glance.trust_summary(trust)["readings"]["faithfulness"]


def test_configuration_shows_what_dvc_declares(small_run) -> None:  # type: ignore[no-untyped-def]
    """The Configuration section prints only config sections dvc.yaml declares as the report's params."""
    import yaml

    cfg, _ = small_run
    printed = yaml.safe_load(report_context.build_context(cfg)["config_yaml"])
    assert "paths" not in printed and "compare" not in printed
    assert {"report", "model", "explain", "visualize"} <= set(printed)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
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
    context = report_context.build_context(cfg)
    counts = results["prepare"].class_balance
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
