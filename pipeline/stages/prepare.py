"""Stage 1: load a dataset, split it (stratified, seeded), scale features on train only.

    python -m pipeline prepare                 # conf/ defaults
    python -m pipeline prepare data.test_size=0.3
    python -m pipeline prepare data=mnist data.loader.folder=~/mnist
    python -m pipeline prepare data=csv data.loader.path=my.csv data.loader.target=label

Writes ``<paths.prepare>/data/`` (the splits, one ``.npy`` file per array) and ``summary.json`` (sizes, class
balance, feature names, image shape). The core is ``pipeline.data.split``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from pipeline import io, layout, signature
from pipeline.config import Config
from pipeline.data.batch_size import check_batch_size
from pipeline.data.dataset import Dataset
from pipeline.data.split import prepare
from pipeline.data.summary import Summary
from pipeline.errors import ConfigError
from pipeline.task import REGRESSION

log = logging.getLogger(__name__)


def run(cfg: Config) -> Summary:
    scaler = build_scaler(cfg.data.scaler)  # before the data are read: a bad key fails at once
    task = cfg.task.value if cfg.task is not None else None
    ds = load_dataset(cfg.data.loader, task)
    if task is None:
        log.info("Task: %s, inferred from the data (%s); set task=... to choose", ds.task, task_reason(ds))

    arrays, summary = prepare(ds, scaler, cfg.data.test_size, cfg.data.val_size, cfg.seed)
    summary.loader = str(cfg.data.loader.get("_target_", ""))
    check_batch_size(summary.sizes["train"], cfg.train.batch_size)

    if ds.test_rows is not None:
        log.info("Test split: %s's own test set; data.test_size is not used", ds.name)
    for warning in summary.warnings:
        log.warning("%s", warning)
    io.write_arrays(layout.data_file(cfg), **arrays)
    io.write_json(layout.summary_file(cfg), summary.to_dict())
    log.info(
        "Prepared %s: %d train / %d val / %d test rows, %d features, %s -> %s",
        ds.name,
        *summary.sizes.values(),
        summary.n_features,
        target_line(summary),
        cfg.paths.prepare,
    )
    return summary


def build_scaler(node: Any) -> Any:
    """``data.scaler`` built (a scikit-learn transformer), or None when it is null."""
    try:
        return instantiate(node)
    except InstantiationException as err:
        raise ConfigError(f"Config key 'data.scaler' cannot be built: {err}") from err


def load_dataset(loader: Any, task: str | None = None) -> Dataset:
    """Call ``data.loader._target_`` with the other ``data.loader`` keys, each checked first, and
    ``task`` (the config's) when the loader takes one; a loader whose dataset has its own task
    (digits are classes, diabetes a quantity) must agree with a ``task`` that is set.

    The loader is called directly rather than through ``hydra.utils.instantiate``,
    which would wrap a loader's DataError in its own exception and message.
    """
    kwargs = loader_options(loader)
    target = str(kwargs.pop("_target_"))
    fn = loader_function(target)
    reserved = {"task": "set task=... instead"}
    signature.check_keys(
        fn, kwargs, "data.loader", target=target, reserved=reserved, setter="the prepare stage from 'task'"
    )
    names, takes_any = signature.accepted(fn)
    if task is not None and ("task" in names or takes_any):
        kwargs["task"] = task
    required = signature.missing_required(fn, kwargs)
    if required:
        raise ConfigError(
            f"Config key 'data.loader.{required[0]}' is required by {target}: "
            f"set it, e.g. `python -m pipeline prepare data.loader.{required[0]}=...`."
        )
    ds = fn(**kwargs)
    if not isinstance(ds, Dataset):
        raise ConfigError(f"data.loader._target_ {target} returned {type(ds).__name__}, not a Dataset.")
    if task is not None and ds.task != task:
        other = (
            "data=diabetes or data=csv"
            if task == REGRESSION
            else "data=digits, data=breast_cancer or data=csv"
        )
        raise ConfigError(
            f"Config key 'task' = {task!r}, but dataset '{ds.name}' ({target}) is a {ds.task} dataset. "
            f"Drop task=... (each dataset knows its own) or use a {task} dataset ({other})."
        )
    return ds


def loader_options(loader: Any) -> dict[str, Any]:
    """``data.loader`` as plain keyword arguments, ``_target_`` among them; a key left ``???`` or
    one of Hydra's other keys (``_partial_``: the loader is called once, here) is an error."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(loader, DictConfig):
        for key in map(str, loader):
            if OmegaConf.is_missing(loader, key):
                raise ConfigError(
                    f"Config key 'data.loader.{key}' has no value and this dataset needs one: "
                    f"set it, e.g. `python -m pipeline prepare data.loader.{key}=...`."
                )
        loader = OmegaConf.to_container(loader, resolve=True)
    kwargs = dict(cast(dict[str, Any], loader))
    if not kwargs.get("_target_"):
        raise ConfigError("Config key 'data.loader._target_' is missing: name the loader function.")
    hydra_keys = [key for key in kwargs if key.startswith("_") and key.endswith("_") and key != "_target_"]
    if hydra_keys:
        raise ConfigError(
            f"Config key 'data.loader.{hydra_keys[0]}' is not an option of a loader: prepare calls "
            "data.loader._target_ itself, with the other data.loader keys as its arguments."
        )
    return kwargs


def loader_function(target: str) -> Callable[..., Any]:
    """The function ``data.loader._target_`` names."""
    from hydra.utils import get_method

    try:
        return get_method(target)
    except Exception as err:  # Hydra raises ImportError or ValueError, depending on what failed
        raise ConfigError(
            f"Config key 'data.loader._target_' = {target!r} cannot be imported: {err}"
        ) from err


def task_reason(ds: Dataset) -> str:
    """Why the dataset's task is what it is, for the log line that says it was inferred."""
    if ds.task != REGRESSION:
        return f"{len(ds.class_names)} classes"
    distinct = len(np.unique(ds.y))
    return f"target '{ds.target_name}' holds {distinct} distinct numbers"


def target_line(summary: Summary) -> str:
    """What the network will predict, for the log line that says what was prepared."""
    if summary.task != REGRESSION:
        return f"{summary.n_classes} classes"
    return (
        f"a numeric target '{summary.target_name}' (train mean {summary.target_mean:.4g}, "
        f"sd {summary.target_std:.4g})"
    )


if __name__ == "__main__":
    from pipeline.cli import stage_main

    stage_main(run)
