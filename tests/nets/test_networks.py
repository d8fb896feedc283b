"""Any network: the CNN preset, a user's own nn.Module from PYTHONPATH, and the checks that stop
a bad network before training and before an MLflow run is made."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline import layout
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.stages import evaluate, explain, prepare, report, train, visualize
from tests.conftest import ROOT


def readme_example() -> str:
    """The network of the README's "Your own network" section (its first Python block)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own network", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


# The README's example, and a network whose output has the wrong shape.
MYNETS = (
    readme_example()
    + """

class WrongShape(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.lin = nn.Linear(in_features, 3)

    def forward(self, x):
        return self.lin(x.flatten(1))
"""
)


@pytest.fixture
def mynets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module of the user's own networks in a folder on PYTHONPATH (and on sys.path here)."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "mynets.py").write_text(textwrap.dedent(MYNETS))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    yield folder
    sys.modules.pop("mynets", None)


def runs_in(cfg: Config) -> list[str]:
    client = MlflowClient(str(cfg.tracking.uri))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return []
    return [r.info.status for r in client.search_runs([experiment.experiment_id])]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model._target_=nowhere.Net"],
            r"'model\._target_' = 'nowhere\.Net' cannot be imported.*PYTHONPATH",
        ),
        (
            ["model._target_=mynets.TinyNet", "+model.depth=3"],
            r"'model\.depth' is not an argument of mynets\.TinyNet",
        ),
        (
            ["model._target_=mynets.TinyNet", "+model.num_classes=3"],
            r"'model\.num_classes' is set by the train stage",
        ),
        (
            ["model._target_=mynets.WrongShape"],
            r"returns \(2, 3\) for a batch of shape \(2, 1, 8, 8\).*\(2, 10\)",
        ),
    ],
)
def test_a_bad_network_stops_before_training_and_leaves_no_run(
    overrides: list[str], message: str, mynets: Path, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg("model=custom", *overrides)
    prepare.run(cfg)
    with pytest.raises(ConfigError, match=message):
        train.run(cfg)
    assert runs_in(cfg) == []  # no FAILED run left in the user's MLflow list
    assert not layout.model_file(cfg).exists()


def test_a_cnn_on_tabular_data_says_to_use_images(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("data=breast_cancer", "model=cnn")
    prepare.run(cfg)
    with pytest.raises(ConfigError, match=r"model=cnn takes images .* shape \(30,\)"):
        train.run(cfg)
    assert runs_in(cfg) == []


def run_stages(cfg: Config) -> dict[str, object]:
    prepare.run(cfg)
    trained = train.run(cfg)
    evaluated = evaluate.run(cfg)
    explained = explain.run(cfg)
    visualized = visualize.run(cfg)
    report.run(cfg)
    return {"train": trained, "evaluate": evaluated, "explain": explained, "visualize": visualized}


@pytest.mark.slow  # the CNN trains to early stopping on the digits
def test_the_cnn_preset_learns_the_digits_and_every_stage_runs(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("model=cnn", "trainer.max_epochs=60")
    out = run_stages(cfg)
    accuracy = out["evaluate"]["metrics"]["accuracy"]  # type: ignore[index]
    assert accuracy >= 0.97, accuracy
    run = json.loads(layout.run_file(cfg).read_text())
    assert run["arch"]["_target_"] == "pipeline.nets.model.CNN" and run["arch"]["input_shape"] == [1, 8, 8]
    # SHAP through the batched DeepLIFT rules (convolutions have no closed form here): additive.
    assert out["explain"]["additivity_max_error"] < 1e-3  # type: ignore[index]
    path = "batched DeepLIFT (pipeline.explain.deep_lift)"
    assert json.loads(Path(cfg.paths.explain_metrics).read_text())["path"] == path
    html = Path(cfg.paths.report).read_text()
    assert f"explainer ({path})" in html
    assert "CNN 1×8×8 → conv 16, 32 (3×3, max pool 2) → 64 → 10" in html
    record = json.loads(layout.network_file(cfg).read_text())
    kinds = [layer["kind"] for layer in record["layers"]]
    assert kinds[:4] == ["input", "conv", "activation", "pool"] and "flatten" in kinds
    stats = {row["name"]: row for row in record["activation_stats"]}
    assert stats["features.1"]["units"] == 16  # a convolution's activations: one per channel
    drawn = {p.stem for p in layout.figure_dir(cfg.paths.visualize).glob("*.png")}
    assert "first_layer_images" not in drawn  # a convolution weighs neighbourhoods, not the image
    assert {"conv_filters", "conv_feature_maps", "grad_cam_classes", "grad_cam_errors"} <= drawn
    assert {"gradient_norms", "loss_line"} <= drawn
    for title in ("The first convolution&#39;s filters", "Where the network looks, per class (Grad-CAM)"):
        assert title in html or title.replace("&#39;", "'") in html


@pytest.mark.slow
def test_a_users_network_runs_through_every_stage(mynets: Path, make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("model=custom", "model._target_=mynets.TinyNet", "+model.width=8")
    out = run_stages(cfg)
    assert out["evaluate"]["metrics"]["accuracy"] > 0.8  # type: ignore[index]
    run = json.loads(layout.run_file(cfg).read_text())
    assert run["arch"] == {
        "_target_": "mynets.TinyNet",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "width": 8,
    }
    assert "TinyNet (mynets.TinyNet, width=8)" in Path(cfg.paths.report).read_text()
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(run["tracking_uri"])  # models:/ URIs resolve in the current store
    logged = mlflow.pytorch.load_model(run["model_uri"])
    X = np.load(layout.data_file(cfg) / "X_test.npy")[:4]
    from pipeline.nets import model

    with torch.no_grad():
        assert torch.allclose(
            logged(torch.from_numpy(X)), model.load(layout.model_file(cfg))(torch.from_numpy(X))
        )


def test_grad_cam_points_at_the_pixels_that_raised_the_class() -> None:
    """Channel 0 fires on positive pixels, channel 1 on negative ones; class 1's score reads only
    channel 0. For an image positive at the top-left and negative at the bottom-right, class 1's
    map lights the top-left alone, and class 0's the bottom-right."""
    import torch
    from torch import nn

    from pipeline.internals import conv
    from pipeline.nets import model

    class TwoInks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1, bias=False)
            self.act = nn.ReLU()
            self.flat = nn.Flatten()
            self.head = nn.Linear(128, 2, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
                reads = torch.zeros(2, 2, 8, 8)
                reads[1, 0] = 1.0  # class 1: channel 0 (positive ink), anywhere
                reads[0, 1] = 1.0  # class 0: channel 1 (negative ink)
                self.head.weight.copy_(reads.reshape(2, 128))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.flat(self.act(self.conv(x))))

    net = model.Shaped(TwoInks(), (1, 8, 8))
    image = np.zeros((8, 8), dtype=np.float32)
    image[1:3, 1:3] = 1.0
    image[5:7, 5:7] = -1.0
    rows = np.stack([image.reshape(64)] * 2)
    cams = conv.grad_cam(net, rows, np.array([1, 0]), net.net.conv)
    assert cams.shape == (2, 8, 8)
    assert cams[0, :4, :4].max() > 0 and cams[0, 4:, 4:].max() == 0
    assert cams[1, 4:, 4:].max() > 0 and cams[1, :4, :4].max() == 0
