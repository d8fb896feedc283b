"""What one activation module of a network saw and produced on the test rows: the record the
visualize stage's core makes and its figures draw.

A module of its own, with numpy alone: the record travels to the stage's pool worker inside
figure jobs, and unpickling it there must not import the stage (torch, ~2 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LayerActivations:
    """What one activation module saw and produced on the test rows."""

    label: str  # "hidden 1", ...
    name: str  # module name in the network ("net.1", "features.1")
    activation: str  # "relu" | "tanh" | "sigmoid"
    pre: np.ndarray  # (rows, units): the activation's input
    post: np.ndarray  # (rows, units): the activation's output
    # "units", or "channels" for a convolutional layer: a channel's value for a row is its mean
    # over the image's positions (its maximum after ReLU, so a dead channel is one that never fires)
    per: str = "units"
