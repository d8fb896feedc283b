"""What a convolutional network on images adds to visualize: the first layer's filters, the feature
maps of each conv block, and Grad-CAM maps (where the last conv layer looked) for the worst errors
and, per class, for the images the network got right."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pipeline import plots
from pipeline.internals import activations, network
from pipeline.nets import model, predict

if TYPE_CHECKING:
    from pipeline.task import Task

# Images per class averaged into the per-class Grad-CAM map.
PER_CLASS = 16


def feature_maps(net: model.Shaped, X: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Per activation module that follows a convolution: its output maps (rows, channels, h, w)
    for the rows ``X`` (flat, as the stages hold them)."""
    found: dict[str, np.ndarray] = {}

    def hook(name: str, _mod: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if output.dim() == 4:
            found[name] = output.detach().cpu().numpy().copy()

    activations.hooked(net.net, hook, lambda: predict.outputs(net, X))
    return list(found.items())


def grad_cam(net: model.Shaped, X: np.ndarray, targets: np.ndarray, layer: nn.Module) -> np.ndarray:
    """Captum's Grad-CAM of ``layer`` for output ``targets[i]`` of each row of ``X``, upsampled to
    the image (rows, height, width); ReLU'd, so 0 where the layer's features lowered the score."""
    from captum.attr import LayerAttribution, LayerGradCam

    net.eval()
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).reshape(len(X), *net.input_shape)
    x = x.to(predict.device_of(net))
    cams = LayerGradCam(net.net, layer).attribute(
        x, target=torch.as_tensor(targets, dtype=torch.long).tolist()
    )
    upsampled = LayerAttribution.interpolate(cams, tuple(net.input_shape[1:]), interpolate_mode="bilinear")
    return np.asarray(upsampled[:, 0].detach().cpu().numpy(), dtype=np.float64)


def class_maps(
    net: model.Shaped,
    layer: nn.Module,
    X: np.ndarray,
    images: np.ndarray,
    examples: Sequence[tuple[str, int, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per class of ``examples`` ((name, output, rows), see ``Task.class_examples``): the mean of its
    images, and the mean of their Grad-CAM maps for its output, each map scaled to its own peak."""
    means, maps = [], []
    for _, output, rows in examples:
        cams = grad_cam(net, X[rows], np.full(len(rows), output), layer)
        peaks = cams.reshape(len(cams), -1).max(axis=1)
        maps.append((cams / np.where(peaks > 0, peaks, 1)[:, None, None]).mean(axis=0))
        means.append(images[rows].mean(axis=0))
    return np.stack(means), np.stack(maps), [name for name, _, _ in examples]


def conv_jobs(
    net: model.Shaped,
    task: Task,
    arrays: dict[str, np.ndarray],
    image_shape: Sequence[int] | None,
    predicted: np.ndarray,
    errors: np.ndarray,
) -> list[plots.Job]:
    """The figures of a convolutional network on images (none for other networks): its filters,
    the feature maps and the Grad-CAM maps of the worst errors (``errors``, test rows), titled by
    the task (true / predicted class, or actual / predicted value: ``predicted``, as the task's
    ``predict`` gives it), and per class (none for a regression) its mean map."""
    convs = network.conv2d_layers(net)
    if not convs or not image_shape:
        return []
    X, y = arrays["X_test"], arrays["y_test"]
    images = arrays["X_test_raw"].reshape(-1, *image_shape)
    first, (name, last) = convs[0], convs[-1]
    rows = np.arange(min(4, len(y)))
    jobs = [
        plots.job("conv_filters", weights=first[1].weight.detach().cpu().numpy(), name=first[0]),
        plots.job(
            "conv_feature_maps",
            images=images[rows],
            blocks=feature_maps(net, X[rows]),
            titles=[task.row_title(predicted, y, int(i)) for i in rows],
        ),
    ]
    examples = task.class_examples(predicted, y, PER_CLASS)
    if examples:
        means, maps, shown = class_maps(net, last, X, images, examples)
        jobs.append(plots.job("grad_cam_classes", images=means, cams=maps, classes=shown, layer=name))
    if len(errors):
        cams = grad_cam(net, X[errors], task.explained_outputs(predicted, errors), last)
        titles = [task.row_title(predicted, y, int(i)) for i in errors]
        jobs.append(plots.job("grad_cam_errors", images=images[errors], cams=cams, titles=titles, layer=name))
    return jobs
