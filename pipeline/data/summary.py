"""What prepare says about the data it wrote (``summary.json``), and every later stage reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import DataError

# Written for a regression only: a classification's summary.json has no such keys.
REGRESSION_ONLY = ("target_name", "target_mean", "target_std", "target_summary")


@dataclass(kw_only=True)
class Summary:
    """The prepared dataset, in the order of ``summary.json``'s keys.

    Fields with a default are those a summary may lack: the ones added after the first release
    (``task`` and the target's, ``warnings``, ``test_split``, ``uri``, ``loader``), and the ones a
    summary written by hand for a test or a tool may leave out (``n_samples``, ``sizes``, ``scaler``,
    ``seed``). A classification is described by its classes (``class_balance``), a regression by
    its target (``target_*``; the train stage fits (y - target_mean) / target_std)."""

    dataset: str
    task: str = "classification"  # or "regression" (pipeline.task)
    n_samples: int = 0
    n_features: int
    n_classes: int  # 1 for a regression: one output unit, the prediction
    class_names: list[str]  # a regression: [target_name]
    target_name: str | None = None
    target_mean: float | None = None  # of the train split's target
    target_std: float | None = None
    target_summary: dict[str, float] | None = None  # min, max, mean, std of the train split's target
    class_balance: dict[str, list[int]] | None = None  # rows per class, for each split
    warnings: list[str] = field(default_factory=list)  # shown in the report's at-a-glance panel
    feature_names: list[str]
    image_shape: list[int] | None = None  # [height, width] when each row is a flattened image
    sizes: dict[str, int] = field(default_factory=dict)  # rows per split: train, val, test
    scaler: str = ""  # the scaler's class name
    # "official": the dataset's own test set (MNIST's t10k files); "stratified" a stratified draw;
    # "random" a plain seeded draw (regression: no classes to stratify by).
    test_split: str = "stratified"
    seed: int | None = None
    uri: str | None = (
        None  # where the rows were read from (the MLflow run's dataset source); None: see loader
    )
    loader: str = ""  # data.loader._target_

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """(height, width) of image rows; None for a table."""
        return (int(self.image_shape[0]), int(self.image_shape[1])) if self.image_shape else None

    def to_dict(self) -> dict[str, Any]:
        """``summary.json``'s content: every field, but the target's only for a regression."""
        return {
            key: value
            for key, value in dataclasses.asdict(self).items()
            if not (key in REGRESSION_ONLY and value is None)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "summary.json") -> Summary:
        """A summary as ``to_dict`` wrote it (or an older one, without the later fields)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        lacking = [name for name in required if name not in data]
        if unknown or lacking:
            problem = f"unknown keys {unknown}" if unknown else f"no {', '.join(lacking)}"
            raise DataError(
                f"'{source}' is not a summary this version of glassnet reads ({problem}): "
                "rerun the 'prepare' stage (`dvc repro prepare` or `python -m pipeline prepare`)."
            )
        return cls(**data)
