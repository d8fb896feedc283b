"""The comparison page over real MLflow runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.errors import GlassnetError
from pipeline.plots import figures
from pipeline.report import comparison
from pipeline.tools import compare
from pipeline.tracking.location import resolve_uri
from pipeline.tracking.queries import RunRecord
from tests.stages.test_report import parse


def _record(name: str, metric: float | None, **params: str) -> RunRecord:
    metrics = {} if metric is None else {"test_accuracy": metric}
    return RunRecord(name, name, 0, "FINISHED", params, metrics, {"task": "classification"})


def test_rank_and_varying_params() -> None:
    runs = [
        _record("a", 0.9, lr="0.1", seed="1"),
        _record("b", 0.95, lr="0.01", seed="1"),
        _record("c", None, lr="0.1", seed="1"),
    ]
    ranked, missing = comparison.rank(runs, "test_accuracy", higher_is_better=True)
    assert [r.name for r in ranked] == ["b", "a"] and [r.name for r in missing] == ["c"]
    assert comparison.varying_params(ranked) == ["lr"]
    lower, _ = comparison.rank(runs, "test_accuracy", higher_is_better=False)
    assert [r.name for r in lower] == ["a", "b"]


def test_the_task_of_the_runs_picks_the_metric_and_its_direction() -> None:
    runs = [_record("a", 0.9), _record("b", 0.95)]
    assert comparison.ranking(runs, None, None) == ("test_accuracy", True)
    for lower in ("test_log_loss", "test_ece", "best_val_loss", "additivity_max_error"):
        assert comparison.ranking(runs, lower, None) == (lower, False), lower
    assert comparison.ranking(runs, "test_macro_f1", None) == ("test_macro_f1", True)
    assert comparison.ranking(runs, "test_ece", True) == ("test_ece", True)  # as configured
    # A regression's metric is read as a regression's, whatever most of the experiment is.
    regression = RunRecord("r", "r", 0, "FINISHED", {}, {"test_mae": 40.0}, {"task": "regression"})
    assert comparison.ranking([*runs, regression], "test_mae", None) == ("test_mae", False)


def test_leaderboard_rows_and_sentences() -> None:
    runs = [_record("a", 0.9, lr="0.1"), _record("b", 0.95, lr="0.01"), _record("c", None, lr="0.1")]
    ranked, missing = comparison.rank(runs, "test_accuracy", higher_is_better=True)
    page = comparison.page_context(runs, ranked, missing, "test_accuracy", True, ["lr"], {"b": 1.0})
    assert [(row["rank"], row["name"], row["params"]) for row in page["leaderboard"]] == [
        (1, "b", {"lr": "0.01"}),
        (2, "a", {"lr": "0.1"}),
    ]
    assert page["leaderboard"][0]["agreement"] == 1.0 and np.isnan(page["leaderboard"][1]["agreement"])
    assert page["missing"] == ["c"] and page["metric_columns"] == ["test_accuracy"]
    assert page["verdict"] == [
        "Best run: b with test_accuracy = 0.9500 (higher is better).",
        "The 2 ranked runs span 0.9000 to 0.9500.",
        "The best run differs from the runner-up in lr = 0.01 (vs 0.1).",
        "1 run(s) have no test_accuracy and are listed but not ranked.",
    ]
    assert comparison.filter_text(None, None) == "all runs"
    assert comparison.filter_text("h3", "tags.sweep = 'lr'") == "name starts with 'h3' AND tags.sweep = 'lr'"


def test_leaderboard_order_matches_mlflow(compared) -> None:  # type: ignore[no-untyped-def]
    cfg, page_path, run_ids = compared
    client = MlflowClient(resolve_uri(cfg.tracking.uri))
    accuracy = {rid: client.get_run(rid).data.metrics["test_accuracy"] for rid in run_ids}
    expected = sorted(run_ids, key=lambda rid: -accuracy[rid])
    html = page_path.read_text()
    order = [
        rid
        for rid in (
            line.split('data-run-id="')[1].split('"')[0]
            for line in html.splitlines()
            if 'data-run-id="' in line
        )
    ]
    assert order == expected
    assert "model.hidden_sizes" in html  # the varying hyperparameter is a column and a figure
    page = parse(html)
    assert len(page.images) >= 2 + 2  # param plot, curves, explanation figures of the best two
    for sid, _ in compare.SECTIONS:
        assert sid in page.ids
    # The best runs' explanation figures carry the report's captions (pipeline.plots.figures).
    assert figures.spec("feature_importance").caption[:60] in html.replace("&#39;", "'")


def test_explanation_agreement_with_the_best_run() -> None:
    best = np.array([[0.1, 0.5, 0.2, 0.9], [0.0, 0.1, 0.1, 0.3]])  # (classes, features)
    same_order = best * 3 + 0.01
    reversed_order = best[:, ::-1]
    other_data = np.ones((2, 6))
    agreement = comparison.explanation_agreement(
        {"a": best, "b": same_order, "c": reversed_order, "d": other_data}, "a"
    )
    assert agreement["a"] == pytest.approx(1.0) and agreement["b"] == pytest.approx(1.0)
    assert agreement["c"] == pytest.approx(-1.0) and np.isnan(agreement["d"])
    records = {"a": {"importance": best.tolist()}, "b": {"importance": same_order.tolist()}}
    assert comparison.agreement_with_best(records, "a") == pytest.approx({"a": 1.0, "b": 1.0})
    assert comparison.agreement_with_best(records, "z") == {}  # the best run logged no explanation


def test_explanations_are_compared_across_runs(compared) -> None:  # type: ignore[no-untyped-def]
    cfg, page_path, run_ids = compared
    html = page_path.read_text().replace("&#39;", "'")
    page = parse(html)
    assert "explanations" in page.ids and "explanation vs #1" in html
    cells = re.findall(r'<td class="num agreement" data-sort="([^"]+)"', html)
    assert len(cells) == 3 and float(cells[0]) == pytest.approx(1.0)  # the best run agrees with itself
    assert all(-1 <= float(c) <= 1 for c in cells)
    assert "model.hidden_sizes against explanation agreement" in html
    assert "Where the two best runs look differently" in html  # the digits are images
    # The two best runs' sanity and surrogate figures, side by side, with the report's captions.
    for fid in ("sanity_curve", "surrogate_fidelity"):
        assert html.count(figures.spec(fid).caption[:60]) == 2, fid


def test_page_is_the_shared_layout_with_its_own_sections() -> None:
    context = {
        "title": "Comparison <of> runs",
        "generated": "today",
        "experiment": "glassnet",
        "tracking_uri": "sqlite:///mlflow.db",
        "metric": "test_accuracy",
        "higher_is_better": True,
        "filter_text": "all runs",
        "runs": [_record("a", 0.9)],
        "verdict": ["Best run: a with test_accuracy = 0.9000."],
        "varying": [],
        "metric_columns": ["test_accuracy"],
        "leaderboard": [
            {"rank": 1, "name": "a", "run_id": "a", "params": {}, "metrics": {"test_accuracy": 0.9}}
        ],
        "missing": [],
        "figures": {"params": [], "curves": [], "agreement": [], "difference": []},
        "best_two": [],
        "agreement": {},
    }
    html = compare.render_compare(context)
    page = parse(html)
    assert page.links == [sid for sid, _ in compare.SECTIONS]
    assert set(page.links) <= page.ids and "glance-title" in page.ids
    assert "<title>Comparison &lt;of&gt; runs</title>" in html
    assert "from the MLflow store <code>sqlite:///mlflow.db</code>." in html
    assert html.count("<script>") == 1  # the sortable leaderboard


def test_comparison_is_logged_as_a_run(compared) -> None:  # type: ignore[no-untyped-def]
    cfg, _, run_ids = compared
    client = MlflowClient(resolve_uri(cfg.tracking.uri))
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`glassnet.kind` = 'comparison'")
    assert len(runs) == 1
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "compare")} == {"compare/compare.html"}


def test_prefix_filter_and_no_runs(compared) -> None:  # type: ignore[no-untyped-def]
    cfg, _, _ = compared
    from omegaconf import OmegaConf

    only = OmegaConf.merge(
        cfg, {"compare": {"run_name_prefix": "h3", "output": str(Path(cfg.paths.report).parent / "c2.html")}}
    )
    html = compare.run(only).read_text()  # type: ignore[arg-type]
    assert html.count("data-run-id=") == 1
    none = OmegaConf.merge(cfg, {"compare": {"run_name_prefix": "zzz"}})
    with pytest.raises(GlassnetError, match="no runs matching"):
        compare.run(none)  # type: ignore[arg-type]


def test_runs_on_the_same_data_show_the_same_datasets(compared) -> None:  # type: ignore[no-untyped-def]
    """Three runs trained on one prepared split: MLflow lists the same three datasets for each."""
    cfg, _, run_ids = compared
    client = MlflowClient(resolve_uri(cfg.tracking.uri))
    seen = {
        rid: sorted((i.dataset.name, i.dataset.digest) for i in client.get_run(rid).inputs.dataset_inputs)
        for rid in run_ids
    }
    first = seen[run_ids[0]]
    assert [name for name, _ in first] == ["digits-test", "digits-train", "digits-val"]
    assert len({digest for _, digest in first}) == 3  # three splits, three digests
    assert all(found == first for found in seen.values())


def test_explanation_difference_figures() -> None:
    from pipeline.plots import compare as figs

    best = np.array([[0.0, 1.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    second = np.array([[0.0, 3.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    maps = figs.importance_difference_maps(best, second, (2, 2), ["a", "b"], ("#1 x", "#2 y"))
    shown = [ax.images[0].get_array() for ax in maps.axes if ax.images]
    # Class a: pixel 2 gained half the attention, pixel 1 lost it; class b did not change.
    np.testing.assert_allclose(np.asarray(shown[0]).ravel(), [0, -0.5, 0.5, 0])
    np.testing.assert_allclose(np.asarray(shown[1]), 0)
    bars = figs.importance_changes(best, second, ["f0", "f1", "f2", "f3"], ("#1 x", "#2 y"), top=2)
    ax = bars.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = [p.get_width() for p in ax.patches]
    assert sorted(labels) == ["f1", "f2"] and sorted(widths) == pytest.approx([-0.25, 0.25])
