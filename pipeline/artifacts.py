"""What several stages read: the prepared splits and their summary, and the trained network.

A stage imports this module, never another stage: what it reads is then a dependency DVC sees
(``dvc.yaml``). File names come from ``layout``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline import io, layout
from pipeline.config import Config
from pipeline.data.summary import Summary

if TYPE_CHECKING:
    from pipeline.nets.model import Shaped


def load_data(cfg: Config) -> tuple[dict[str, np.ndarray], Summary]:
    """The prepare stage's arrays (X_train, y_train, ..., X_test_raw) and its summary."""
    return io.read_arrays(layout.data_file(cfg), "prepare"), load_summary(cfg)


def load_summary(cfg: Config) -> Summary:
    """The prepare stage's summary of the data it wrote."""
    path = layout.summary_file(cfg)
    return Summary.from_dict(io.read_json(path, "prepare"), str(path))


def input_shape(summary: Summary) -> tuple[int, ...]:
    """The shape of one row as the network takes it: (channels, height, width) for images
    (one channel: the loaders' images are greyscale), (features,) for tables."""
    if summary.image_shape:
        return (1, *(int(d) for d in summary.image_shape))
    return (int(summary.n_features),)


def load_model(cfg: Config) -> Shaped:
    """The trained network (eval mode), as the train stage saved it, seen through ``model.Shaped``
    (flat rows in, logits out; ``.net`` is the network itself)."""
    from pipeline.nets import model

    return model.load(layout.model_file(cfg))
