"""The learning task, classification or regression: everything that differs between the two.

prepare decides the task (``task`` in config, or inferred from the target) and writes it into
``summary.json``; every later stage asks the task object (``task.of(summary)``) instead of
branching on its name. Each task lives in one module (``classification``, ``regression``): its
metrics, losses, history columns, example and error picking, figure lists, captions and wording.
For regression the network has one output, in the target's own units (see the train stage), and the
summary names the target (``target_name``) and how it was scaled (``target_mean``, ``target_std``).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from pipeline.data.summary import Summary

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from pipeline import plots
    from pipeline.config import SurrogateConfig
    from pipeline.explain.surrogate import Rule, Surrogate
    from pipeline.explain.trust import Predict, Score

# What the task reads: prepare's summary, or a dict of its keys (``Summary.from_dict``).
SummaryLike: TypeAlias = "Summary | dict[str, Any]"


class Kind(str, enum.Enum):
    """The ``task`` config key's values (``auto``: inferred by prepare, see conf/config.yaml)."""

    classification = "classification"
    regression = "regression"


CLASSIFICATION = Kind.classification.value
REGRESSION = Kind.regression.value


class Task:
    """What the stages ask of a task; ``Classification`` and ``Regression`` answer.

    ``summary``: the prepared data's summary (prepare's ``summary.json``)."""

    name: ClassVar[str]
    regression: ClassVar[bool]

    def __init__(self, summary: SummaryLike) -> None:
        self.summary = as_summary(summary)

    @property
    def target_name(self) -> str:
        """What the target is called: the regression target's column, else "class"."""
        return "class"

    # -- train --

    # The metric logged beside the loss ("acc"; "rmse" in the target's units) and the columns of
    # the history file (paths.history), one row per epoch.
    second_metric: ClassVar[str]
    history_columns: ClassVar[tuple[str, ...]]
    # What to use instead when loss._target_ does not fit the task.
    suggested_losses: ClassVar[str]

    @property
    def objectives(self) -> tuple[str, ...]:
        """The values ``train.objective`` may take: the best validation loss or second metric."""
        return ("best_val_loss", f"best_val_{self.second_metric}")

    def default_loss(self) -> nn.Module:
        """The task's own training loss (``loss=auto``)."""
        raise NotImplementedError

    def loss_fits(self, loss: nn.Module) -> bool:
        """Whether ``loss`` falls as the predictions improve, on a made-up batch of this task."""
        raise NotImplementedError

    @property
    def target_scale(self) -> tuple[float, float] | None:
        """The train split's (mean, std) of a regression target: the network is fitted to the
        scaled target (``pipeline.training.learner.Learner``); None for classes."""
        return None

    def describe_second(self, value: float) -> str:
        """The second metric's ``value`` for the log, e.g. "val_acc 0.9833"."""
        return f"val_{self.second_metric} {value:.4f}"

    # -- evaluate --

    def predict(self, net: nn.Module, X: np.ndarray) -> np.ndarray:
        """The network's predictions for the rows of ``X``: what ``score`` and the figures take."""
        raise NotImplementedError

    def score(self, y_true: np.ndarray, predicted: np.ndarray, *, calibration_bins: int) -> dict[str, Any]:
        """Every test statistic of ``predicted`` against ``y_true`` (evaluate's ``evaluation.json``;
        ``metrics``: the headline numbers). ``calibration_bins``: the reliability bins of a classifier."""
        raise NotImplementedError

    def evaluation_jobs(
        self, scores: dict[str, Any], y_true: np.ndarray, predicted: np.ndarray
    ) -> list[plots.Job]:
        """The task's own test-set figures, in report order."""
        raise NotImplementedError

    def plot_rows(
        self, scores: dict[str, Any], y_true: np.ndarray, predicted: np.ndarray
    ) -> dict[str, list[tuple[Any, ...]]]:
        """The rows of the DVC plot files this task draws, by their ``paths`` key; the other task's
        files get none."""
        raise NotImplementedError

    def describe_scores(self, scores: dict[str, Any]) -> str:
        """The headline test metrics of ``scores`` (from ``score``) in one line, for the log."""
        raise NotImplementedError

    # -- explain --

    def prediction_of(self, outputs: np.ndarray) -> np.ndarray:
        """What the network's outputs (rows, outputs) predict: the class with the largest logit, or a
        regression's one output, in the target's units."""
        raise NotImplementedError

    def wrong_rows(self, y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """The positions where ``predicted`` (as ``prediction_of`` gives it) is wrong: the mistakes
        explain tops its examples up with (a regression has none: its predictions are off by degrees)."""
        raise NotImplementedError

    def removal_score(self) -> Score:
        """What the faithfulness curves measure as features are removed (pipeline.explain.trust)."""
        raise NotImplementedError

    def faithfulness_metrics(self, faith: dict[str, Any], y: np.ndarray) -> dict[str, float]:
        """The faithfulness curves (``trust.faithfulness`` of the explained rows, whose answers are
        ``y``) as metrics."""
        raise NotImplementedError

    def pick_examples(self, y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
        """Up to ``n`` positions of explained rows to draw one by one (waterfalls), the most telling first."""
        raise NotImplementedError

    def explanation_jobs(
        self, arrays: dict[str, np.ndarray], raw_test: np.ndarray, n_examples: int
    ) -> list[plots.Job]:
        """The figures of the attributions, in report order (``arrays``: an explain.core.Explanation's;
        ``raw_test``: the unscaled test split, which ``arrays["rows"]`` index)."""
        raise NotImplementedError

    def fit_surrogate(
        self,
        predict: Predict,
        X_train: np.ndarray,
        X_test: np.ndarray,
        y_test: np.ndarray,
        config: SurrogateConfig,
        seed: int,
    ) -> Surrogate:
        """Decision trees (pipeline.explain.surrogate) fitted to what the network (``predict``)
        predicts on ``X_train``, scored on the test split: the task's tree and score."""
        raise NotImplementedError

    def surrogate_jobs(self, tree: Surrogate, tree_job: plots.Job) -> list[plots.Job]:
        """The surrogate's figures in report order, ``tree_job`` (the tree drawn) among them."""
        raise NotImplementedError

    def surrogate_record(self, tree: Surrogate, rules: list[Rule]) -> dict[str, Any]:
        """The surrogate in words, for checks.json: its metrics and ``rules``."""
        raise NotImplementedError

    # -- visualize --

    # The name of a 2-D projection's score (``separation``) in the metrics: "<metric>_<source>_<method>".
    separation_metric: ClassVar[str]

    def separation(self, points: np.ndarray, labels: np.ndarray) -> float:
        """How well a 2-D projection (``points``) arranges the test rows' ``labels``."""
        raise NotImplementedError

    def output_spec(self, width: int) -> dict[str, Any]:
        """The architecture's last block: what the network's ``width`` outputs are."""
        raise NotImplementedError

    def loss_label(self, loss_target: str | None) -> str:
        """The loss trained on, as the loss line's axis names it (``loss_target``: ``loss._target_``)."""
        raise NotImplementedError

    def pick_errors(self, predicted: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
        """The test rows shown as the network's worst errors, worst first, at most ``n``
        (``predicted``: as ``predict`` gives them)."""
        raise NotImplementedError

    def error_pool(self, predicted: np.ndarray, y: np.ndarray) -> tuple[int, str]:
        """How many test rows ``pick_errors`` picks from, and what they are (for the log)."""
        raise NotImplementedError

    def error_metrics(self, predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """visualize's metric of the errors."""
        raise NotImplementedError

    def record_header(self) -> dict[str, Any]:
        """The fields visualize's ``network.json`` opens with."""
        raise NotImplementedError

    def error_record(self, predicted: np.ndarray, y: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """What ``network.json`` says of the errors: one entry per row of ``rows``, and their count."""
        raise NotImplementedError

    def row_title(self, predicted: np.ndarray, y: np.ndarray, row: int) -> str:
        """One test row's actual and predicted answer, short enough to title an image."""
        raise NotImplementedError

    def explained_outputs(self, predicted: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The output Grad-CAM explains for each of ``rows``."""
        raise NotImplementedError

    def class_means(self, layers: list[np.ndarray], y: np.ndarray) -> list[np.ndarray]:
        """Per layer (its outputs, (rows, units)): each unit's mean output per class."""
        raise NotImplementedError

    def class_examples(
        self, predicted: np.ndarray, y: np.ndarray, n: int
    ) -> list[tuple[str, int, np.ndarray]]:
        """Per class: its name, its output and up to ``n`` of its test rows the network got right."""
        raise NotImplementedError

    # -- report --

    # The report's section titles where this task's differ from the registry's (section id -> title).
    section_titles: ClassVar[dict[str, str]] = {}
    # What removing the features an explanation ranks first does, in the trust summary's words.
    removal_effect: ClassVar[str]
    # The metric the comparison page ranks this task's runs by, unless compare.metric names one.
    ranking_metric: ClassVar[str]
    # Parts of metric names for which lower is better; any other metric ranks higher-is-better.
    lower_is_better: ClassVar[tuple[str, ...]] = ("loss", "error")

    @classmethod
    def higher_is_better(cls, metric: str) -> bool:
        """Whether a larger value of ``metric`` (a name the runs logged in MLflow) is better."""
        return not any(part in metric.lower() for part in cls.lower_is_better)

    @property
    def described(self) -> str:
        """The target in a few words, after the dataset's sizes in the report's summary."""
        raise NotImplementedError

    @property
    def explained_output(self) -> str:
        """What SHAP splits into one contribution per feature, in the report's words."""
        raise NotImplementedError

    @property
    def explained_average(self) -> str:
        """What the SHAP base value is the average of (over the background samples)."""
        raise NotImplementedError

    def cards(self, metrics: dict[str, Any]) -> list[dict[str, str]]:
        """The report's headline numbers (``label``, formatted ``value``) from evaluate's metrics."""
        raise NotImplementedError

    def glance(self, evaluation: dict[str, Any]) -> list[str]:
        """The at-a-glance sentences on the test set (``evaluation``: evaluate's evaluation.json)."""
        raise NotImplementedError

    def surrogate_sentence(self, tree: dict[str, Any]) -> str | None:
        """The at-a-glance sentence on the surrogate tree (explain's checks record), if it has one."""
        raise NotImplementedError

    def best_validation(self, training: dict[str, Any]) -> str:
        """The kept epoch's validation score in words (``training``: the train stage's metrics)."""
        raise NotImplementedError


def fmt(value: float) -> str:
    """A value in the target's units, for captions and titles: 4 significant digits."""
    return f"{value:.4g}"


def as_summary(summary: SummaryLike) -> Summary:
    return summary if isinstance(summary, Summary) else Summary.from_dict(summary, "the summary given")


def name_of(summary: SummaryLike) -> str:
    """The task of a prepared dataset (summaries written before regression existed: classification)."""
    return str(as_summary(summary).task or CLASSIFICATION)


def kind(name: str) -> type[Task]:
    """The task class named ``name`` (classification, regression): what a task is, without data."""
    from pipeline.task.classification import Classification
    from pipeline.task.regression import Regression

    return Regression if name == REGRESSION else Classification


def of(summary: SummaryLike) -> Task:
    """The task object of a prepared dataset."""
    from pipeline.task.classification import Classification
    from pipeline.task.regression import Regression

    return Regression(summary) if name_of(summary) == REGRESSION else Classification(summary)


def is_regression(summary: SummaryLike) -> bool:
    return name_of(summary) == REGRESSION


def target_name(summary: SummaryLike) -> str:
    """What the target is called: the regression target's column, else "class"."""
    return of(summary).target_name
