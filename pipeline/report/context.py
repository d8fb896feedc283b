"""What the report reads from the stages' outputs: the templates' context.

    context = build_context(cfg)      # every earlier stage's outputs, read by the paths of cfg

The context is plain data (dicts, lists, strings, numbers, ``ReportFigure``s); the templates only
print it, with the filters of pipeline.report.formats. What differs between classification and
regression (headline cards, at-a-glance sentences, wording) comes from the task (pipeline.task).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pipeline import artifacts, config, io, layout, task
from pipeline.config import Config
from pipeline.data.summary import Summary
from pipeline.nets.arch import summary_line
from pipeline.plots import figures
from pipeline.plots.figures import SECTIONS
from pipeline.report import glance
from pipeline.report.html import ReportFigure, embed_figure
from pipeline.task import Task
from pipeline.tracking import location

# The config sections a stage reads, as the Configuration section prints them: paths (dvc.yaml's deps
# and outs) and compare (not a stage of the pipeline) are left out, so dvc.yaml can declare all of
# these as the report's params.
SHOWN_CONFIG = (
    "seed",
    "data",
    "model",
    "optim",
    "scheduler",
    "trainer",
    "train",
    "evaluate",
    "explain",
    "visualize",
    "tracking",
    "report",
)
RUN_FIELDS = ("run_id", "experiment_name", "experiment_id", "started", "git_commit", "git_dirty")


def build_context(cfg: Config) -> dict[str, Any]:
    """Read every earlier stage's outputs into the templates' context."""
    summary = artifacts.load_summary(cfg)
    run = io.read_json(layout.run_file(cfg), "train")
    training = io.read_json(cfg.paths.train_metrics, "train")
    evaluation = io.read_json(layout.evaluation_file(cfg), "evaluate")
    explain = io.read_json(cfg.paths.explain_metrics, "explain")
    checks = io.read_json(layout.checks_file(cfg), "explain")
    folders = {stage: layout.figure_dir(getattr(cfg.paths, stage)) for stage in figures.STAGES}
    t = task.of(summary)
    return {
        "title": cfg.report.title,
        "task": t.name,
        "section_titles": t.section_titles,
        "target": summary.target_summary and {"name": t.target_name, **summary.target_summary},
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": data_summary(summary, t, run["arch"], training, evaluation["metrics"]),
        "run": run_record(run),
        "verdict": glance.verdict(t, evaluation, explain, checks),
        "checks": checks,
        "training": training,
        "best_validation": t.best_validation(training),
        "metrics": evaluation["metrics"],
        "per_class": evaluation.get("per_class", []),
        "top_confusions": evaluation.get("top_confusions", []),
        "largest_errors": evaluation.get("largest_errors", []),
        "explain": explain,
        "explainer": explain.get("explainer", "deep"),
        "explained_output": t.explained_output,
        "explained_average": t.explained_average,
        "trust": glance.trust_summary(explain, t.removal_effect),
        "figures": {sid: section_figures(sid, folders, t.name) for sid, _ in SECTIONS},
        "config_yaml": configuration_yaml(cfg),
        "network": network_context(cfg),
    }


def data_summary(
    summary: Summary, t: Task, arch: dict[str, Any], training: dict[str, Any], metrics: dict[str, Any]
) -> dict[str, Any]:
    """The dataset, the model and the headline numbers (prepare's summary, the trained ``arch``)."""
    balance = summary.class_balance or {}
    sizes = ", ".join(f"{n:,} {split}" for split, n in summary.sizes.items())
    return {
        "dataset": summary.dataset,
        "sizes": f"{sizes}; {summary.n_features} features, {t.described}",
        "model": summary_line(arch),
        "n_parameters": training["n_parameters"],
        "warnings": summary.warnings,
        # rows: (class, count per split), columns in the splits' order
        "class_counts": [
            (name, [balance[split][i] for split in balance]) for i, name in enumerate(summary.class_names)
        ]
        if balance
        else [],
        "splits": list(balance),
        "cards": t.cards(metrics),
    }


def run_record(run: dict[str, Any]) -> dict[str, Any]:
    """The MLflow run the train stage opened, and where to look at it."""
    uri = run["tracking_uri"]
    is_server = uri.startswith(("http://", "https://"))
    return {
        **{key: run.get(key, "unknown") for key in RUN_FIELDS},
        "tracking_uri": uri,
        "ui_command": location.ui_command(uri),
        "ui_url": (
            f"{uri.rstrip('/')}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
            if is_server
            else ""
        ),
    }


def section_figures(
    section: str, folders: Mapping[str, Path], kind: str = task.CLASSIFICATION
) -> list[ReportFigure]:
    """Embed the PNGs of ``section``'s figures that their stage (``folders[stage]``) wrote, in registry
    order, with the title and caption of the task ``kind``; a figure a stage did not draw for this
    data (beeswarm for images, a confusion matrix for a regression) is left out."""
    found = [(spec, folders[spec.stage] / f"{spec.id}.png") for spec in figures.in_section(section)]
    return [
        embed_figure(path, spec.title_for(kind), spec.caption_for(kind), spec.alt)
        for spec, path in found
        if path.exists()
    ]


def layer_rows(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The visualize stage's layer specs as table rows: block name, shape, parameters."""
    rows = []
    for spec in specs:
        kind = spec["kind"]
        if kind == "linear":
            block, shape = "Linear", f"{spec['fan_in']:,} → {spec['width']:,}"
        elif kind == "activation":
            block, shape = spec["function"], f"{spec['width']:,} units"
        elif kind == "dropout":
            block, shape = f"Dropout (p = {spec['p']:g}, training only)", f"{spec['width']:,} units"
        elif kind == "input":
            block, shape = "Input", f"{spec['width']:,} features"
        elif spec.get("name") == "prediction":  # a regression's output: the value itself
            block, shape = "Output", f"1 value: the predicted {spec.get('target', 'target')}"
        else:
            block, shape = "softmax", f"{spec['width']:,} class probabilities"
        rows.append({"block": block, "shape": shape, "params": spec["params"]})
    return rows


def network_context(cfg: Config) -> dict[str, Any]:
    """The visualize stage's outputs for the network, activations and errors sections."""
    network = io.read_json(layout.network_file(cfg), "visualize")
    return {
        **network,
        # The thresholds visualize used (its config section is among the report's params in dvc.yaml).
        "saturation_margin": cfg.visualize.saturation_margin,
        "saturation_share": cfg.visualize.saturation_share,
        "layer_rows": layer_rows(network["layers"]),
        "metrics": io.read_json(cfg.paths.visualize_metrics, "visualize"),
    }


def configuration_yaml(cfg: Config) -> str:
    """The resolved config of every section a stage reads (``SHOWN_CONFIG``), as YAML."""
    return OmegaConf.to_yaml({name: config.plain(getattr(cfg, name)) for name in SHOWN_CONFIG})
