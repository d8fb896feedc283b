"""dvc.yaml tells the truth: each stage lists every module of pipeline/ its process can import and
every config key it reads, and the `${stage}` command runs the module the stage is named after."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT
from tests.dvc_truth import config_reads, covered, dep_path, import_closure

SPEC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = SPEC["stages"]
ENTRY = ["pipeline.__main__", "pipeline.cli"]


def _targets(stage: dict) -> list[str]:  # type: ignore[type-arg]
    """Modules of the `_target_`s in the config sections the stage declares (instantiated by it)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str) and target.startswith("pipeline."):
                found.append(target.rsplit(".", 1)[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for key in stage.get("params", []):
        node: object = params
        for part in str(key).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        walk(node)
    return found


def closure(name: str) -> set[str]:
    return import_closure([*ENTRY, f"pipeline.stages.{name}"], stage=name, targets=_targets(STAGES[name]))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_every_module_it_imports(name: str) -> None:
    deps = set(STAGES[name]["deps"])
    missing = sorted(dep_path(m) for m in closure(name) if dep_path(m) not in deps)
    assert not missing, f"dvc.yaml stage {name!r} misses deps {missing}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_no_module_it_does_not_import(name: str) -> None:
    """Tight: a module the stage never imports must not rerun it."""
    code = {d for d in STAGES[name]["deps"] if d.startswith("pipeline/") and d.endswith(".py")}
    assert code <= {dep_path(m) for m in closure(name)}, code - {dep_path(m) for m in closure(name)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_cover_every_key_it_reads(name: str) -> None:
    declared = [str(p) for p in STAGES[name].get("params", [])]
    reads = config_reads(closure(name))
    assert "*" not in reads, f"stage {name!r} reads the whole config (as_dict/to_yaml of cfg)"
    missing = sorted(key for key in reads if not covered(key, declared))
    assert not missing, f"dvc.yaml stage {name!r} reads params it does not declare: {missing}"


def test_report_reads_its_templates() -> None:
    assert "pipeline/report/templates" in STAGES["report"]["deps"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_that_reads_the_figure_registry_lists_its_data(name: str) -> None:
    """The registry's titles and captions are data (figures.yaml) read by pipeline.plots.figures."""
    listed = "pipeline/plots/figures.yaml" in STAGES[name]["deps"]
    assert listed == ("pipeline.plots.figures" in closure(name))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_command_runs_its_module(name: str) -> None:
    assert STAGES[name]["cmd"].split()[:2] == ["${stage}", name]
    assert SPEC["vars"][0]["stage"] == "python -m pipeline"


def test_closure_follows_lazy_imports_and_the_figure_registry() -> None:
    """The derivation itself: imports inside functions and drawing modules named by the registry count."""
    found = closure("explain")
    assert "pipeline.explain.fast_deep" in found  # imported by explain
    assert "pipeline.plots.attribution" in found  # named by pipeline.plots.figures for explain's figures
    assert "pipeline.plots.network" not in closure("evaluate")
    assert config_reads(["pipeline.stages.explain"]) >= {"explain.n_samples", "report.dpi"}
