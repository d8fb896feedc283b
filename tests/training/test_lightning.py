"""Lightning used through its public extension points, with every Trainer feature open.

Fast tests check the config side (open trainer and scheduler sections checked against their
targets' signatures, callbacks from config), the checkpoint plugin and that pipeline/ touches
no private Lightning name. The slow ones train through the real CLI and check that
``+trainer.gradient_clip_val``, ``+trainer.accumulate_grad_batches``, ``trainer.precision=bf16-mixed``,
``scheduler=cosine`` and a LearningRateMonitor from ``train.callbacks`` each took effect, and
that a default run prints none of Lightning's warnings (none says anything a user could act on).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from pipeline import io
from pipeline.config import to_config
from pipeline.errors import ConfigError
from pipeline.training.build import check_open
from tests.conftest import CONF, ROOT, compose_conf, isolated_overrides

LIGHTNING_ROOTS = ("pytorch_lightning", "lightning_fabric", "lightning")
# Lightning's warnings that say nothing about a default run (``fit`` quiets them), as they begin.
QUIETED = (
    "`isinstance(treespec, LeafSpec)` is deprecated",
    "IterableDataset",
    "is smaller than the logging interval",
    "exists and is not empty",
)


# ------------------------------------------------------------------ no private Lightning names


def _lightning_private_names() -> set[str]:
    """Every ``_name`` Lightning's own source defines (functions, methods, attributes it assigns)."""
    import importlib.util

    names: set[str] = set()
    for package in ("pytorch_lightning", "lightning_fabric"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None
        for path in Path(spec.origin).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    names.add(node.attr)
    return {n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))}


def _pipeline_sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "pipeline").rglob("*.py"))}


def test_pipeline_uses_no_private_lightning_name() -> None:
    private = _lightning_private_names()
    # Names an override of Lightning's internals would touch: the scan must know them.
    assert {"_current_fx_name", "_save_checkpoint", "_on_before_step"} <= private
    found = []
    for path, tree in _pipeline_sources().items():
        where = path.relative_to(ROOT)
        text = path.read_text(encoding="utf-8")
        for needle in ("._on_", "_save_checkpoint", "_current_fx_name"):
            if needle in text:
                found.append(f"{where}: {needle!r}")
        for node in ast.walk(tree):
            # A private module or name imported from Lightning.
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] in LIGHTNING_ROOTS
            ):
                parts = node.module.split(".") + [alias.name for alias in node.names]
                found += [f"{where}:{node.lineno}: imports {p}" for p in parts if p.startswith("_")]
            # An attribute Lightning defines as private, read, called or assigned.
            if isinstance(node, ast.Attribute) and node.attr in private:
                found.append(f"{where}:{node.lineno}: .{node.attr}")
            # A method named like one of Lightning's private ones: an override of its internals.
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name in private:
                        found.append(f"{where}:{item.lineno}: defines {node.name}.{item.name}")
    assert not found, "\n".join(found)


# ------------------------------------------------------------------ open trainer config


def test_any_trainer_argument_is_accepted_and_typed_fields_stay_typed() -> None:
    cfg = to_config(
        compose_conf(
            [
                "+trainer.gradient_clip_val=1.0",
                "+trainer.accumulate_grad_batches=2",
                "+trainer.log_every_n_steps=5",
                "+trainer.limit_train_batches=0.5",
                "trainer.max_epochs=7",
            ]
        )
    )
    check_open(cfg)
    given: Any = cfg.trainer  # open: the added keys are not the schema's attributes
    assert given.gradient_clip_val == 1.0 and given.accumulate_grad_batches == 2
    assert cfg.trainer.max_epochs == 7 and isinstance(cfg.trainer.max_epochs, int)
    with pytest.raises(Exception, match=r"trainer\.max_epochs"):
        to_config(compose_conf(["trainer.max_epochs=many"]))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("+trainer.gradient_clip_vale=0.5", r"'trainer\.gradient_clip_vale'.*'trainer\.gradient_clip_val'"),
        ("+trainer.acumulate_grad_batches=2", r"'trainer\.acumulate_grad_batches'.*accumulate_grad_batches"),
        ("+trainer.zzz=1", r"'trainer\.zzz' is not an argument of pytorch_lightning\.Trainer"),
        ("+trainer.callbacks=[]", r"'trainer\.callbacks' is set by the train stage.*train\.callbacks"),
        ("+trainer.logger=false", r"'trainer\.logger' is set by the train stage.*tracking"),
        ("+trainer.plugins=[]", r"'trainer\.plugins' is set by the train stage"),
        ("+trainer.enable_model_summary=true", r"'trainer\.enable_model_summary' is set by the train stage"),
    ],
)
def test_a_bad_trainer_key_is_named_with_the_closest_valid_one(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        check_open(to_config(compose_conf([override])))


class WiderTrainer(pl.Trainer):
    """A Trainer subclass with one argument more (and no **kwargs)."""

    def __init__(self, extra: int = 0, max_epochs: int | None = None) -> None:
        super().__init__(max_epochs=max_epochs)
        self.extra = extra


def test_trainer_keys_are_checked_against_the_target_not_a_fixed_list() -> None:
    # The subclass takes `extra` but not the stock Trainer's `accelerator`; the Trainer the reverse.
    target = "trainer._target_=tests.training.test_lightning.WiderTrainer"
    with pytest.raises(
        ConfigError, match=r"'trainer\.accelerator' is not an argument of tests\.training\.test_lightning"
    ):
        check_open(to_config(compose_conf([target, "+trainer.extra=3"])))
    with pytest.raises(ConfigError, match=r"trainer\.extra"):
        check_open(to_config(compose_conf(["+trainer.extra=3"])))


# ------------------------------------------------------------------ schedulers


@pytest.mark.parametrize(
    ("option", "cls", "monitor"),
    [
        ("none", None, None),
        ("cosine", "CosineAnnealingLR", None),
        ("step", "StepLR", None),
        ("plateau", "ReduceLROnPlateau", "val_loss"),
    ],
)
def test_every_scheduler_option_builds_in_lightnings_format(
    option: str, cls: str | None, monitor: str | None
) -> None:
    from pipeline.training.build import optimization

    assert (CONF / "scheduler" / f"{option}.yaml").exists()
    cfg = to_config(compose_conf([f"scheduler={option}", "trainer.max_epochs=9"]))
    check_open(cfg)
    made = optimization(cfg)(torch.nn.Linear(2, 2).parameters())
    if cls is None:
        assert isinstance(made, torch.optim.Adam)
        return
    assert isinstance(made["optimizer"], torch.optim.Adam)
    schedule = made["lr_scheduler"]
    assert type(schedule["scheduler"]).__name__ == cls
    assert schedule["interval"] == "epoch" and schedule.get("monitor") == monitor
    if option == "cosine":  # T_max follows trainer.max_epochs by interpolation
        assert schedule["scheduler"].T_max == 9


def test_the_default_config_has_no_scheduler() -> None:
    assert to_config(compose_conf()).scheduler._target_ is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["scheduler=cosine", "+scheduler.eta_mn=0.1"], r"'scheduler\.eta_mn'.*'scheduler\.eta_min'"),
        (["scheduler=step", "+scheduler.optimizer=1"], r"'scheduler\.optimizer' is set by the train stage"),
        (["+scheduler.T_max=3"], r"'scheduler\.T_max'.*_target_ is null.*scheduler=cosine"),
        (["scheduler=step", "scheduler._target_=torch.optim.nope.StepLR"], r"'scheduler\._target_'"),
    ],
)
def test_a_bad_scheduler_key_is_named(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        check_open(to_config(compose_conf(overrides)))


# ------------------------------------------------------------------ callbacks from config


def test_callbacks_from_config_are_appended_to_the_stages_own(tmp_path: Path) -> None:
    from pytorch_lightning.callbacks import LearningRateMonitor

    from pipeline.training.build import build_trainer

    cfg = to_config(
        compose_conf(
            [
                "trainer.accelerator=cpu",
                "+train.callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor",
                "+train.callbacks.lr.logging_interval=epoch",
            ]
        )
    )
    trainer, roles = build_trainer(cfg, False, tmp_path)
    callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set in Trainer.__init__, untyped
    monitors = [c for c in callbacks if isinstance(c, LearningRateMonitor)]
    assert len(monitors) == 1 and monitors[0].logging_interval == "epoch"
    assert roles.history in callbacks and roles.checkpoint in callbacks


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "+train.callbacks.lr._target_=pytorch_lightning.callbacks.Nope",
            r"'train\.callbacks\.lr\._target_'",
        ),
        (
            "+train.callbacks.lr._target_=collections.OrderedDict",
            r"'train\.callbacks\.lr\._target_'.*not a Lightning",
        ),
        (
            "+train.callbacks.lr.logging_interval=epoch",
            r"'train\.callbacks\.lr' must be a callback with a _target_",
        ),
    ],
)
def test_a_bad_callback_names_its_key(override: str, expected: str, tmp_path: Path) -> None:
    from pipeline.training.build import build_trainer

    with pytest.raises(ConfigError, match=expected):
        build_trainer(to_config(compose_conf(["trainer.accelerator=cpu", override])), False, tmp_path)


# ------------------------------------------------------------------ checkpoints


def test_checkpoints_are_written_atomically_and_a_stop_signal_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.training.callbacks import AtomicCheckpointIO

    plugin, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    plugin.save_checkpoint({"epoch": 1}, path)
    real_save = torch.save

    def failing(obj: object, f: object) -> None:
        Path(str(f)).write_bytes(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(OSError, match="last.ckpt"):
        plugin.save_checkpoint({"epoch": 2}, path)
    assert plugin.load_checkpoint(path)["epoch"] == 1  # the previous checkpoint, intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left

    def signalled(obj: object, f: Any) -> None:
        io.on_stop_signal(15, None)  # SIGTERM arrives mid-write ...
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", signalled)
    with pytest.raises(KeyboardInterrupt):  # ... and stops the stage once the file is complete
        plugin.save_checkpoint({"epoch": 3}, path)
    assert plugin.load_checkpoint(path)["epoch"] == 3


def test_the_trainer_writes_through_the_atomic_plugin(tmp_path: Path) -> None:
    from pipeline.training.build import build_trainer
    from pipeline.training.callbacks import AtomicCheckpointIO

    trainer, _ = build_trainer(to_config(compose_conf(["trainer.accelerator=cpu"])), False, tmp_path)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_fit_raises_none_of_the_quieted_warnings(tmp_path: Path) -> None:
    from pytorch_lightning.loggers import CSVLogger

    from pipeline.nets import model
    from pipeline.training.build import build_trainer
    from pipeline.training.fit import fit

    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {
        "X_train": rng.normal(size=(150, 8)).astype(np.float32),
        "y_train": rng.integers(0, 3, 150),
        "X_val": rng.normal(size=(40, 8)).astype(np.float32),
        "y_val": rng.integers(0, 3, 40),
    }
    partial = tmp_path / "checkpoints.partial"
    partial.mkdir()
    (partial / "run_id").write_text("abc")  # as the stage writes it before the fit
    cfg = to_config(
        compose_conf(["trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"])
    )
    trainer, _ = build_trainer(cfg, CSVLogger(tmp_path), partial, train_rows=150)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model.MLP(8, 3, [16], "relu", 0.0), lambda p: torch.optim.Adam(p), arrays, trainer, 64, 0)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if any(q in m for q in QUIETED)], messages
    # Nor any other warning of Lightning's: a default run has nothing a user could act on.
    lightning = [
        f"{w.filename}: {w.message}" for w in caught if any(r in w.filename for r in LIGHTNING_ROOTS)
    ]
    assert not lightning, lightning


# ------------------------------------------------------------------ through the real CLI


def _cli(folder: Path, stage: str, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.stages.{stage}", *isolated_overrides(folder), *overrides],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the digits prepared (paths and the MLflow store inside it)."""
    folder = tmp_path_factory.mktemp("lightning")
    _ok(_cli(folder, "prepare"))
    return folder


QUICK = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.enable_progress_bar=false"]


@pytest.mark.slow
def test_lightning_features_take_effect_through_the_cli(project: Path) -> None:
    from mlflow import MlflowClient

    probe = project / "probe.json"
    out = _ok(
        _cli(
            project,
            "train",
            *QUICK,
            "trainer.max_epochs=3",
            "+trainer.gradient_clip_val=0.5",
            "+trainer.accumulate_grad_batches=2",
            "trainer.precision=bf16-mixed",
            "scheduler=cosine",
            "+train.callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor",
            "+train.callbacks.probe._target_=tests.probes.TrainingProbe",
            f"+train.callbacks.probe.path={probe}",
        )
    )
    seen = json.loads(probe.read_text())
    rows = len(io.read_arrays(project / "artifacts/prepare/data", "prepare")["y_train"])
    per_epoch = math.ceil(rows / 64)  # train.batch_size
    assert seen["batches"] == 3 * per_epoch
    # Accumulating 2 batches: half as many optimizer steps (an odd epoch's last batch steps alone).
    assert seen["steps"] == seen["global_step"] == 3 * math.ceil(per_epoch / 2)
    # Clipping: the norms were above 0.5 before, and the optimizer applied at most 0.5.
    assert max(seen["norms_before"]) > 0.5
    assert max(seen["norms_applied"]) <= 0.5 + 1e-4
    # bf16 mixed precision on CPU: the layers ran under autocast.
    assert seen["dtypes"] == ["torch.bfloat16"]
    # The cosine schedule, as LearningRateMonitor logged it to the run: falling every epoch.
    run = json.loads((project / "artifacts/train/run.json").read_text())
    client = MlflowClient(run["tracking_uri"])
    keys = [k for k in client.get_run(run["run_id"]).data.metrics if k.startswith("lr-")]
    assert keys == ["lr-Adam"], keys
    history = sorted(client.get_metric_history(run["run_id"], "lr-Adam"), key=lambda m: m.step)
    rates = [m.value for m in history]
    assert len(rates) == 3 and rates[0] == pytest.approx(1e-3)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:], strict=False)), rates
    assert not [q for q in QUIETED if q in out]


@pytest.mark.slow
def test_a_default_training_run_prints_no_lightning_warning(project: Path) -> None:
    out = _ok(_cli(project, "train", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"))
    assert not [q for q in QUIETED if q in out], out[-3000:]
    assert not re.search(r"\bwarn", out, re.I), out[-3000:]
    # Lightning's warnings print as "<file>.py:<line>: <message>", without the word "warning".
    assert not re.search(r"\.py:\d+: ", out), out[-3000:]


@pytest.mark.slow
def test_a_misspelt_trainer_key_stops_the_stage_naming_the_closest(project: Path) -> None:
    before = sorted(p.name for p in (project / "artifacts").rglob("*"))
    done = _cli(project, "train", *QUICK, "+trainer.gradient_clip_vale=0.5")
    text = done.stdout + done.stderr
    assert done.returncode == 2, text[-3000:]
    assert "trainer.gradient_clip_vale" in text and "trainer.gradient_clip_val'" in text
    assert "Traceback" not in text
    assert sorted(p.name for p in (project / "artifacts").rglob("*")) == before


def test_building_a_trainer_logs_no_advert(tmp_path: Path) -> None:
    from pipeline.training.build import build_trainer

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    # Lightning's info lines go to its own handler, not to the root logger: listen where they start.
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    handler = Collect()
    rank_zero.addHandler(handler)
    try:
        cfg = to_config(compose_conf(["trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]))
        build_trainer(cfg, False, tmp_path / "checkpoints.partial")
    finally:
        rank_zero.removeHandler(handler)
    assert seen, "Lightning logged nothing at all: the handler is not where its lines start"
    assert not [m for m in seen if "litlogger" in m], seen


# ------------------------------------------------------------------ per-step fast paths


def test_learner_attribute_assignment_keeps_nn_module_semantics() -> None:
    """Learner.__setattr__'s shortcut (a plain value replacing a plain attribute) must not change
    what nn.Module does with parameters, submodules and buffers."""
    from pipeline.training.learner import Learner

    learner = Learner(torch.nn.Linear(3, 2), lambda params: torch.optim.SGD(params, lr=0.1))
    learner.note = "a"
    learner.note = "b"  # the shortcut: a plain value over a plain attribute
    assert learner.note == "b" and "note" in learner.__dict__
    learner.head = torch.nn.Linear(2, 2)  # a module: registered, not a plain attribute
    assert "head" in dict(learner.named_children()) and "head" not in learner.__dict__
    learner.scale = torch.nn.Parameter(torch.ones(1))
    assert "scale" in dict(learner.named_parameters())
    learner.register_buffer("count", torch.zeros(1))
    learner.count = torch.ones(1)  # a tensor over a buffer stays a buffer
    assert torch.equal(dict(learner.named_buffers())["count"], torch.ones(1))
    with pytest.raises(TypeError):  # as nn.Module: a parameter cannot be replaced by a plain value
        learner.scale = 3.0
    learner.note = torch.nn.Linear(1, 1)  # a module over a plain attribute: registered
    assert "note" in dict(learner.named_children()) and "note" not in learner.__dict__


def test_in_memory_data_moves_batches_as_lightnings_default_does() -> None:
    from lightning_fabric.utilities.apply_func import move_data_to_device

    from pipeline.training.learner import InMemoryData

    data = InMemoryData({"X_train": np.ones((4, 3), np.float32), "y_train": np.arange(4)}, 2, 0)
    batch = (torch.ones(4, 3), torch.arange(4))
    cpu = torch.device("cpu")
    moved = data.transfer_batch_to_device(batch, cpu, 0)
    expected = move_data_to_device(batch, cpu)
    assert type(moved) is tuple and all(torch.equal(a, b) for a, b in zip(moved, expected, strict=True))
    # Anything else goes the default way (a dict of tensors, a tensor inside a list of lists).
    nested = {"x": torch.ones(2), "rest": [[torch.zeros(1)]]}
    assert torch.equal(data.transfer_batch_to_device(nested, cpu, 0)["rest"][0][0], torch.zeros(1))
    if torch.cuda.is_available():
        on_gpu = data.transfer_batch_to_device(batch, torch.device("cuda", 0), 0)
        assert all(t.device.type == "cuda" for t in on_gpu)


class _Terminal:
    """A stand-in for stdout that says it is a terminal (pytest's capture says it is not)."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("setting", "terminal", "expected"),
    [
        ("auto", False, False),  # piped or logged (dvc repro > log): no bar
        ("auto", True, True),
        ("always", False, True),
        ("never", True, False),
    ],
)
def test_lightnings_bar_follows_glassnet_progress(
    setting: str, terminal: bool, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.training.build import build_trainer

    monkeypatch.setenv("GLASSNET_PROGRESS", setting)
    if terminal:
        monkeypatch.setattr(sys, "stdout", _Terminal())
    cfg = to_config(compose_conf(["trainer.accelerator=cpu"]))  # enable_progress_bar: true
    trainer, _ = build_trainer(cfg, False, tmp_path / "checkpoints.partial")
    assert (trainer.progress_bar_callback is not None) is expected
    # The user's false is kept whatever the setting.
    off = to_config(compose_conf(["trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]))
    assert build_trainer(off, False, tmp_path / "off")[0].progress_bar_callback is None


def test_the_default_profiler_is_a_cheap_pass_through_and_a_named_one_is_lightnings(tmp_path: Path) -> None:
    from contextlib import nullcontext

    from pytorch_lightning.profilers import PassThroughProfiler, SimpleProfiler

    from pipeline.training.build import build_trainer
    from pipeline.training.callbacks import NoProfiler

    base = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]
    trainer, _ = build_trainer(to_config(compose_conf(base)), False, tmp_path / "a")
    assert isinstance(trainer.profiler, NoProfiler) and isinstance(trainer.profiler, PassThroughProfiler)
    with trainer.profiler.profile("[Callback]x.on_train_batch_start") as name:
        assert name == "[Callback]x.on_train_batch_start"
    assert isinstance(trainer.profiler.profile("step"), nullcontext)  # no generator a call
    assert trainer.profiler.summary() == ""
    simple = to_config(compose_conf([*base, "+trainer.profiler=simple"]))
    named, _ = build_trainer(simple, False, tmp_path / "b")
    assert type(named.profiler) is SimpleProfiler


def test_callback_histories_round_trip_through_a_checkpoint_as_one_string(tmp_path: Path) -> None:
    from pipeline.training.callbacks import GradientNorms, History, WeightHistory

    history, weights, grads = History(), WeightHistory(), GradientNorms()
    history.rows = [
        {"epoch": 0.0, "val_loss": 0.5, "train_loss": float("nan")},
        {"epoch": 1.0, "val_loss": 0.25},
    ]
    weights.epochs = [0, 1]
    weights.layers = {
        "net.0": {
            "shape": [4, 3],
            "weight": [[-0.1, 0.0, 0.1]] * 2,
            "bias": [[], []],
            "weight_std": [0.1, 0.2],
        }
    }
    weights.initial = {"net.0.weight": torch.ones(4, 3)}
    grads.epochs, grads.layers = [1], {"net.0": {"shape": [4, 3], "grad_norm": [0.3]}}
    path = tmp_path / "c.ckpt"
    torch.save({"h": history.state_dict(), "w": weights.state_dict(), "g": grads.state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    # The histories are strings: torch.save's pickler visits each one once, not each number.
    assert isinstance(saved["h"]["rows"], str) and isinstance(saved["w"]["layers"], str)
    again = History(), WeightHistory(), GradientNorms()
    for callback, key in zip(again, "hwg", strict=True):
        callback.load_state_dict(saved[key])
    assert math.isnan(again[0].rows[0]["train_loss"])
    assert again[0].rows[1] == history.rows[1] and again[0].rows[0]["val_loss"] == 0.5
    assert (again[1].epochs, again[1].layers) == (weights.epochs, weights.layers)
    assert torch.equal(again[1].initial["net.0.weight"], weights.initial["net.0.weight"])
    assert (again[2].epochs, again[2].layers) == (grads.epochs, grads.layers)
    # A checkpoint of an older glassnet held the lists themselves: it still resumes.
    older = History()
    older.load_state_dict({"rows": history.rows[1:]})
    assert older.rows == history.rows[1:]
