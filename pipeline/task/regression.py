"""The regression task: everything the stages do differently for it (see pipeline.task)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import metrics, plots
from pipeline.task import Task, fmt

if TYPE_CHECKING:
    from torch import nn

    from pipeline.config import SurrogateConfig
    from pipeline.explain.surrogate import Rule, Surrogate
    from pipeline.explain.trust import Predict, Score


class Regression(Task):
    name = "regression"
    regression = True

    @property
    def target_name(self) -> str:
        """The regression target's column."""
        return str(self.summary.target_name or "class")

    @property
    def mean(self) -> float:
        """The train split's mean of the target (prepare writes it for every regression)."""
        return float(self.summary.target_mean or 0.0)

    @property
    def std(self) -> float:
        """The train split's standard deviation of the target."""
        return float(self.summary.target_std or 1.0)

    # -- train --

    second_metric = "rmse"
    history_columns = ("epoch", "train_loss", "train_rmse", "val_loss", "val_rmse")
    suggested_losses = "loss=mse, loss=huber or loss=l1"

    def default_loss(self) -> nn.Module:
        from torch import nn

        return nn.MSELoss()

    def loss_fits(self, loss: nn.Module) -> bool:
        """A regression loss is 0 where the prediction equals the target and grows with the error."""
        import torch

        y = torch.tensor([0.5, -1.0, 2.0])
        return float(loss(y, y)) < 1e-6 < float(loss(y + 1.0, y)) < float(loss(y + 2.0, y))

    @property
    def target_scale(self) -> tuple[float, float] | None:
        return (self.mean, self.std)

    def describe_second(self, value: float) -> str:
        """In the target's units, e.g. "val_rmse 55.3489 progression"."""
        return f"val_{self.second_metric} {value:.4f} {self.target_name}"

    # -- evaluate --

    def predict(self, net: nn.Module, X: np.ndarray) -> np.ndarray:
        """Predictions (rows,) in the target's units (train folded the target's scaling into the net)."""
        from pipeline.nets.predict import predict_values  # torch: only for the stages that run the network

        return predict_values(net, X)

    def score(self, y_true: np.ndarray, predicted: np.ndarray, *, calibration_bins: int) -> dict[str, Any]:
        """The errors against the train mean's (``target_mean``), the largest errors, residual quantiles;
        a regression has no calibration bins."""
        return {"task": self.name, **metrics.regression(y_true, predicted, self.mean)}

    def evaluation_jobs(
        self, scores: dict[str, Any], y_true: np.ndarray, predicted: np.ndarray
    ) -> list[plots.Job]:
        m, target = scores["metrics"], self.target_name
        residuals = np.asarray(y_true, np.float64) - predicted
        return [
            plots.job(
                "predicted_vs_actual",
                actual=y_true,
                predicted=predicted,
                target=target,
                rmse=m["rmse"],
                r2=m["r2"],
            ),
            plots.job("residuals_vs_predicted", predicted=predicted, residuals=residuals, target=target),
            plots.job("residual_distribution", residuals=residuals, target=target, rmse=m["rmse"]),
        ]

    def plot_rows(
        self, scores: dict[str, Any], y_true: np.ndarray, predicted: np.ndarray
    ) -> dict[str, list[tuple[Any, ...]]]:
        """(actual, predicted) per test sample."""
        return {"regression_plot": [(float(t), float(p)) for t, p in zip(y_true, predicted, strict=True)]}

    def describe_scores(self, scores: dict[str, Any]) -> str:
        m = scores["metrics"]
        return (
            f"Test RMSE {fmt(m['rmse'])}, MAE {fmt(m['mae'])} {self.target_name} (predicting the train mean: "
            f"RMSE {fmt(m['baseline_rmse'])}), R² {m['r2']:.4f} on {m['n_test']} samples"
        )

    # -- explain --

    def prediction_of(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs[:, 0])

    def wrong_rows(self, y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        return np.zeros(0, dtype=int)

    def removal_score(self) -> Score:
        """The RMSE of the prediction, which grows as the features that matter go."""
        from pipeline.explain import trust

        return trust.RMSE

    def faithfulness_metrics(self, faith: dict[str, Any], y: np.ndarray) -> dict[str, float]:
        def at_tenth(curve: str) -> float:
            return float(np.interp(0.1, faith["fractions"], faith[curve]))

        spread = float(np.std(y)) if len(y) else 0.0
        return {
            # The area over the sd of the explained targets: unitless, larger is more faithful.
            "faithfulness_area": faith["area"] / spread if spread > 0 else float("nan"),
            "faithfulness_rmse_area": faith["area"],
            "faithfulness_rmse_full": float(faith["guided"][0]),
            "faithfulness_rmse_top10pct_removed": at_tenth("guided"),
            "faithfulness_random_rmse_top10pct_removed": at_tenth("random"),
        }

    def pick_examples(self, y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
        """The largest errors first (up to half), then the best predictions."""
        from pipeline import stats

        order = stats.largest_errors(y_pred, y_true, len(y_true))
        worst = order[: n // 2]
        best = order[::-1][: max(min(n, len(order)) - len(worst), 0)]
        return np.concatenate([worst, best]).astype(int)

    def explanation_jobs(
        self, arrays: dict[str, np.ndarray], raw_test: np.ndarray, n_examples: int
    ) -> list[plots.Job]:
        """The single output, in the target's units. Images: the map of mean |SHAP| (no per-class
        maps, no right or wrong examples); tables: the beeswarm, then waterfalls (largest errors first)."""
        from pipeline.explain import jobs

        name, features, shape = self.target_name, self.summary.feature_names, self.summary.image_shape
        y_true, y_pred, values, rows = arrays["y_true"], arrays["y_pred"], arrays["values"], arrays["rows"]
        raw = raw_test[rows]
        found: list[plots.Job] = []
        if shape:
            found.append(
                plots.job(
                    "class_importance",
                    importance=arrays["importance"],
                    image_shape=shape,
                    class_names=[name],
                    target=name,
                )
            )
        else:
            found.append(
                plots.job(
                    "beeswarm",
                    values=values,
                    data=raw,
                    feature_names=features,
                    class_names=[name],
                    target=name,
                )
            )
            chosen = self.pick_examples(y_true, y_pred, n_examples)
            if len(chosen):
                found.append(
                    plots.job(
                        "waterfall",
                        attributions=values[chosen, :, 0],
                        base=arrays["base"][chosen, 0],
                        data=raw[chosen],
                        feature_names=features,
                        titles=[
                            f"sample {rows[i]}: true {fmt(y_true[i])}, predicted {fmt(y_pred[i])}"
                            for i in chosen
                        ],
                        target=name,
                    )
                )
        return [*found, *jobs.trust_jobs(arrays, features, [name], name)]

    def fit_surrogate(
        self,
        predict: Predict,
        X_train: np.ndarray,
        X_test: np.ndarray,
        y_test: np.ndarray,
        config: SurrogateConfig,
        seed: int,
    ) -> Surrogate:
        """Regression trees fitted to the predicted values; scored by R², and the RMSE to the network."""
        import dataclasses

        from sklearn.tree import DecisionTreeRegressor

        from pipeline import stats
        from pipeline.explain import surrogate

        teacher = self.prediction_of(predict(X_test))
        tree = surrogate.fit(
            X_train,
            self.prediction_of(predict(X_train)),
            X_test,
            teacher,
            y_test,
            estimator=DecisionTreeRegressor,
            score=stats.r2,
            max_depth=config.max_depth,
            tolerance=config.tolerance,
            seed=seed,
        )
        gap = tree.predicted - np.asarray(teacher, dtype=np.float64)
        rmse = float(np.sqrt(np.mean(gap**2))) if len(gap) else float("nan")
        return dataclasses.replace(tree, fidelity_rmse=rmse)

    def surrogate_jobs(self, tree: Surrogate, tree_job: plots.Job) -> list[plots.Job]:
        """Fidelity and accuracy (R²) per depth, then the tree; no classes to follow."""
        return [
            plots.job(
                "surrogate_fidelity",
                depths=tree.depths,
                fidelity=tree.fidelity,
                accuracy=tree.accuracy,
                depth=tree.depth,
                network_accuracy=tree.network_accuracy,
                target=self.target_name,
            ),
            tree_job,
        ]

    def surrogate_record(self, tree: Surrogate, rules: list[Rule]) -> dict[str, Any]:
        """With the target's name and the network's R²."""
        return {
            **tree.metrics(),
            "task": self.name,
            "target_name": self.target_name,
            "network_r2": tree.network_accuracy,
            "max_depth": int(tree.depths.max()),
            "rules": [rule.text([self.target_name]) for rule in rules],
            "weakest_classes": [],
        }

    # -- visualize --

    separation_metric = "target_knn_r2"

    def separation(self, points: np.ndarray, labels: np.ndarray) -> float:
        """The neighbour R² of the target (stats.neighbour_r2)."""
        from pipeline import stats

        return stats.neighbour_r2(points, labels)

    def output_spec(self, width: int) -> dict[str, Any]:
        """The single predicted value, in the target's units."""
        return {
            "kind": "output",
            "name": "prediction",
            "width": width,
            "params": 0,
            "target": self.target_name,
        }

    def loss_label(self, loss_target: str | None) -> str:
        """The loss (default MSE) of the target scaled to mean 0 and sd 1 on the train split."""
        name = str(loss_target).rpartition(".")[2] if loss_target else "MSELoss"
        named = {"MSELoss": "MSE", "L1Loss": "mean absolute error", "HuberLoss": "Huber loss"}.get(name, name)
        return f"{named} of the scaled target"

    def pick_errors(self, predicted: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
        """The largest absolute errors first."""
        from pipeline import stats

        return stats.largest_errors(predicted, y, n)

    def error_pool(self, predicted: np.ndarray, y: np.ndarray) -> tuple[int, str]:
        return len(y), "test rows"

    def error_metrics(self, predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """The largest absolute error, in the target's units."""
        errors = np.abs(predicted - y)
        return {"max_abs_error": float(errors.max()) if len(errors) else float("nan")}

    def record_header(self) -> dict[str, Any]:
        return {"task": self.name, "target_name": self.target_name}

    def error_record(self, predicted: np.ndarray, y: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """Actual and predicted in the target's units; no count (every row has an error)."""
        errors = [
            {
                "row": int(i),
                "actual": float(y[i]),
                "predicted": float(predicted[i]),
                "error": float(y[i] - predicted[i]),  # the residual, as evaluate's: > 0 predicted too low
                "abs_error": float(abs(predicted[i] - y[i])),
            }
            for i in rows
        ]
        return {"errors": errors}

    def row_title(self, predicted: np.ndarray, y: np.ndarray, row: int) -> str:
        return f"actual {fmt(y[row])} / pred {fmt(predicted[row])}"

    def explained_outputs(self, predicted: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The one output."""
        return np.zeros(len(rows), dtype=np.int64)

    def class_means(self, layers: list[np.ndarray], y: np.ndarray) -> list[np.ndarray]:
        """None: a regression has no classes."""
        return []

    def class_examples(
        self, predicted: np.ndarray, y: np.ndarray, n: int
    ) -> list[tuple[str, int, np.ndarray]]:
        """None: a regression has no classes."""
        return []

    # -- report --

    section_titles = {"errors": "The largest errors"}
    removal_effect = "raises the error"
    ranking_metric = "test_rmse"
    lower_is_better = (*Task.lower_is_better, "rmse", "mae", "bias")

    @property
    def described(self) -> str:
        return f"a numeric target, {self.target_name} (train mean {fmt(self.mean)}, sd {fmt(self.std)})"

    @property
    def explained_output(self) -> str:
        return f"the network's predicted {self.target_name}, in its own units"

    @property
    def explained_average(self) -> str:
        return "prediction"

    def cards(self, metrics: dict[str, Any]) -> list[dict[str, str]]:
        from pipeline.report.formats import fmt_num

        return [
            {"label": f"test RMSE ({self.target_name})", "value": fmt(metrics["rmse"])},
            {"label": "mean absolute error", "value": fmt(metrics["mae"])},
            {"label": "R² (share of spread explained)", "value": fmt_num(metrics["r2"])},
            {"label": "RMSE of predicting the mean", "value": fmt(metrics["baseline_rmse"])},
        ]

    def glance(self, evaluation: dict[str, Any]) -> list[str]:
        """Its errors in the target's units against predicting the mean, its largest, any bias."""
        from pipeline.report.formats import fmt_pct

        m, target, largest = evaluation["metrics"], self.target_name, evaluation.get("largest_errors", [])
        r2 = m["r2"]
        sentences = [
            f"On the {m['n_test']:,} test samples the network's predictions of {target} are off by "
            f"{fmt(m['mae'])} on average (mean absolute error; RMSE {fmt(m['rmse'])}), against "
            f"{fmt(m['baseline_rmse'])} RMSE for always predicting the training mean of "
            f"{fmt(self.mean)}.",
            f"It explains {fmt_pct(max(r2, 0.0))} of the spread of {target} (R² {r2:.3f})"
            + (": no better than predicting the average." if r2 <= 0 else "."),
        ]
        if largest:
            worst = largest[0]
            sentences.append(
                f"Its largest error: test row {worst['row']}, actual {fmt(worst['actual'])}, predicted "
                f"{fmt(worst['predicted'])} ({'too low' if worst['error'] > 0 else 'too high'} by "
                f"{fmt(abs(worst['error']))})."
            )
        bias = m["bias"]
        if abs(bias) > 0.1 * m["rmse"]:
            sentences.append(
                f"It predicts too {'low' if bias > 0 else 'high'} on average (mean residual {fmt(bias)}): "
                "a systematic bias, not only noise."
            )
        return sentences

    def surrogate_sentence(self, tree: dict[str, Any]) -> str | None:
        if "surrogate_fidelity_r2" not in tree:
            return None
        return (
            f"A regression tree of depth {int(tree['surrogate_depth'])} imitates the network with R² "
            f"{tree['surrogate_fidelity_r2']:.2f} on the test samples."
        )

    def best_validation(self, training: dict[str, Any]) -> str:
        from pipeline.report.formats import fmt_num

        return f"validation RMSE {fmt_num(training['best_val_rmse'])} in {self.target_name}'s units"
