"""Config schema, params.yaml, dvc.yaml and the CLI's handling of bad config."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from pipeline.config import PathsConfig, to_config
from pipeline.errors import ConfigError
from pipeline.tools.params import compose_params
from tests.conftest import CONF, ROOT, compose_conf


def test_defaults_compose_and_validate() -> None:
    cfg = to_config(compose_conf())
    assert cfg.model.hidden_sizes == [128]
    assert cfg.data.name == "digits"
    assert cfg.optim.lr == pytest.approx(1e-3)


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(ConfigKeyError, match=r"model\.nope"):
        to_config(compose_conf(["+model.nope=1"]))


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ValidationError, match=r"trainer\.max_epochs"):
        to_config(compose_conf(["trainer.max_epochs=many"]))


def test_unknown_activation_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"model\.activation"):
        to_config(compose_conf(["model.activation=swish"]))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=-0.1", "optim.lr"),
        ("model.dropout=1.0", "model.dropout"),
        ("model.hidden_sizes=[]", "model.hidden_sizes"),
        ("model.hidden_sizes=[64,0]", "model.hidden_sizes"),
        ("data.test_size=1.0", "data.test_size"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("train.batch_size=0", "train.batch_size"),
        ("explain.n_samples=0", "explain.n_samples"),
    ],
)
def test_out_of_range_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        to_config(compose_conf([override]))


def test_splits_must_leave_training_data() -> None:
    with pytest.raises(ConfigError, match="data.test_size"):
        to_config(compose_conf(["data.test_size=0.6", "data.val_size=0.5"]))


@pytest.mark.parametrize(
    "group", sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "experiment")
)
def test_every_group_option_validates(group: str) -> None:
    # Options that need a value from the user (documented in their file).
    needs = {("model", "custom"): ["model._target_=mynets.TinyNet", "+model.width=32"]}
    for option in sorted((CONF / group).glob("*.yaml")):
        cfg = to_config(compose_conf([f"{group}={option.stem}", *needs.get((group, option.stem), [])]))
        assert OmegaConf.select(cfg, group) is not None


def test_networks_are_typed_by_their_target_and_open_otherwise() -> None:
    cnn = to_config(compose_conf(["model=cnn", "model.channels=[8]"]))
    assert (cnn.model.channels, cnn.model.kernel_size, cnn.model.pool.value) == ([8], 3, "max")
    with pytest.raises(ConfigKeyError, match=r"model\.nope"):  # the shipped networks are closed
        to_config(compose_conf(["model=cnn", "+model.nope=1"]))
    with pytest.raises(ValidationError, match=r"model\.pool"):
        to_config(compose_conf(["model=cnn", "model.pool=median"]))
    with pytest.raises(ConfigError, match=r"model\.channels"):
        to_config(compose_conf(["model=cnn", "model.channels=[]"]))
    # A user's network: its keys are its own (checked against its signature when train builds it).
    mine = to_config(compose_conf(["model=custom", "model._target_=mynets.TinyNet", "+model.width=32"]))
    assert mine.model.width == 32 and mine.model._target_ == "mynets.TinyNet"
    with pytest.raises(ConfigError, match=r"'model\._target_' has no value.*model=custom model\._target_="):
        to_config(compose_conf(["model=custom"]))
    lenet = to_config(compose_conf(["+experiment=lenet"]))
    assert lenet.model._target_ == "pipeline.nets.model.CNN"
    assert (lenet.model.channels, lenet.model.kernel_size, lenet.model.hidden_sizes) == (
        [6, 16],
        5,
        [120, 84],
    )


def test_keras_presets_match_the_tutorials() -> None:
    first = to_config(compose_conf(["+experiment=keras_dropout"]))
    assert (first.model.hidden_sizes, first.model.dropout) == ([128], 0.2)
    assert (first.trainer.max_epochs, first.train.batch_size) == (5, 64)
    assert first.optim._target_ == "torch.optim.Adam"
    second = to_config(compose_conf(["+experiment=keras_two_layer"]))
    assert (second.model.hidden_sizes, second.model.dropout) == ([128, 64], 0.0)
    assert (second.trainer.max_epochs, second.train.batch_size) == (10, 32)


def test_params_yaml_is_the_composition_of_conf(tmp_path: Path) -> None:
    composed = tmp_path / "params.yaml"
    compose_params(composed, [])
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == yaml.safe_load(composed.read_text()), "run `make params` and commit params.yaml"
    to_config(committed)  # and it passes the schema


def _dvc_paths() -> tuple[set[str], set[str]]:
    """(outputs, dependencies) named in dvc.yaml."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    outs: set[str] = set()
    deps: set[str] = set()
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                outs.add(next(iter(entry)) if isinstance(entry, dict) else entry)
        deps.update(stage.get("deps", []))
    return outs, deps


def test_dvc_yaml_paths_match_config() -> None:
    cfg = to_config(compose_conf())
    configured = {getattr(cfg.paths, f.name) for f in dataclasses.fields(PathsConfig)}
    outs, deps = _dvc_paths()
    assert outs == configured
    # Every data dependency is some stage's output.
    assert {d for d in deps if not d.startswith("pipeline/")} <= outs
    # Every code dependency exists.
    for dep in deps:
        if dep.startswith("pipeline/"):
            assert (ROOT / dep).exists(), dep


def test_stages_depend_only_on_the_params_they_use() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "report" not in stages["train"]["params"]
    assert "compare" not in stages["report"]["params"] and "paths" not in stages["report"]["params"]
    for name in ("prepare", "train", "evaluate", "explain"):
        assert "report" not in stages[name]["params"]


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_rejects_unknown_key_cleanly(tmp_path: Path) -> None:
    out = _run_cli(["pipeline.stages.prepare", "+data.colour=red"], tmp_path)
    assert out.returncode == 2
    text = out.stdout + out.stderr
    assert "data.colour" in text
    assert "Traceback" not in text
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_rejects_out_of_range_value_cleanly(tmp_path: Path) -> None:
    out = _run_cli(["pipeline.stages.train", "optim.lr=-1"], tmp_path)
    assert out.returncode == 2
    assert "optim.lr" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_cli_stage_leaves_no_hydra_litter(tmp_path: Path) -> None:
    out = _run_cli(["pipeline.stages.prepare", "paths.prepare=prep"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep"]
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == ["data", "summary.json"]


def test_cli_stage_before_its_inputs_says_what_to_run(tmp_path: Path) -> None:
    out = _run_cli(["pipeline.stages.explain"], tmp_path)
    assert out.returncode == 2
    text = out.stdout + out.stderr
    assert "run the 'prepare' stage first" in text
    assert list(tmp_path.iterdir()) == []
