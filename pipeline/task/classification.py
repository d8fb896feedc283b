"""The classification task: everything the stages do differently for it (see pipeline.task)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import metrics, plots
from pipeline.task import Task

if TYPE_CHECKING:
    from torch import nn

    from pipeline.config import SurrogateConfig
    from pipeline.explain.surrogate import Rule, Surrogate
    from pipeline.explain.trust import Predict, Score


class Classification(Task):
    name = "classification"
    regression = False

    # -- train --

    second_metric = "acc"
    history_columns = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
    suggested_losses = "loss=cross_entropy (or loss=auto)"

    def default_loss(self) -> nn.Module:
        from torch import nn

        return nn.CrossEntropyLoss()

    def loss_fits(self, loss: nn.Module) -> bool:
        """A classification loss prefers logits that favour the true class."""
        import torch

        y = torch.tensor([0, 1, 2])
        right, wrong = torch.eye(3) * 4.0, torch.eye(3)[[1, 2, 0]] * 4.0
        return float(loss(right, y)) < float(loss(wrong, y))

    # -- evaluate --

    def predict(self, net: nn.Module, X: np.ndarray) -> np.ndarray:
        """Class probabilities (rows, classes)."""
        from pipeline.nets.predict import predict_proba  # torch: only for the stages that run the network

        return predict_proba(net, X)

    def score(self, y_true: np.ndarray, predicted: np.ndarray, *, calibration_bins: int) -> dict[str, Any]:
        return metrics.classification(y_true, predicted, self.summary.class_names, calibration_bins)

    def evaluation_jobs(
        self, scores: dict[str, Any], y_true: np.ndarray, predicted: np.ndarray
    ) -> list[plots.Job]:
        labels, per_class, bins = self.summary.class_names, scores["per_class"], scores["reliability"]
        return [
            plots.job("confusion_matrix", cm=np.asarray(scores["confusion"]), labels=labels),
            plots.job(
                "per_class",
                labels=labels,
                **{k: [row[k] for row in per_class] for k in ("precision", "recall", "f1")},
            ),
            plots.job(
                "reliability",
                confidence=[b["confidence"] for b in bins],
                accuracy=[b["accuracy"] for b in bins],
                counts=[b["count"] for b in bins],
                ece=scores["metrics"]["ece"],
            ),
        ]

    def plot_rows(
        self, scores: dict[str, Any], y_true: np.ndarray, predicted: np.ndarray
    ) -> dict[str, list[tuple[Any, ...]]]:
        """(actual, predicted) class names per test sample; (confidence, accuracy, count) per bin."""
        names = self.summary.class_names
        return {
            "predictions": [
                (names[t], names[p]) for t, p in zip(y_true, predicted.argmax(axis=1), strict=True)
            ],
            "calibration": [(b["confidence"], b["accuracy"], b["count"]) for b in scores["reliability"]],
        }

    def describe_scores(self, scores: dict[str, Any]) -> str:
        m = scores["metrics"]
        return (
            f"Test accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f}, log loss {m['log_loss']:.4f}, "
            f"ECE {m['ece']:.4f} on {m['n_test']} samples"
        )

    # -- explain --

    def prediction_of(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs.argmax(axis=1))

    def wrong_rows(self, y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        return np.flatnonzero(y_true != predicted)

    def removal_score(self) -> Score:
        """Accuracy, which falls as the features that matter go."""
        from pipeline.explain import trust

        return trust.ACCURACY

    def faithfulness_metrics(self, faith: dict[str, Any], y: np.ndarray) -> dict[str, float]:
        def at_tenth(curve: str) -> float:
            return float(np.interp(0.1, faith["fractions"], faith[curve]))

        return {
            "faithfulness_area": faith["area"],
            "faithfulness_acc_full": float(faith["guided"][0]),
            "faithfulness_acc_top10pct_removed": at_tenth("guided"),
            "faithfulness_random_acc_top10pct_removed": at_tenth("random"),
        }

    def pick_examples(self, y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
        """Misclassified rows first (up to half), then correct ones."""
        wrong = np.flatnonzero(y_true != y_pred)[: n // 2]
        right = np.flatnonzero(y_true == y_pred)[: n - len(wrong)]
        return np.concatenate([wrong, right]).astype(int)

    def explanation_jobs(
        self, arrays: dict[str, np.ndarray], raw_test: np.ndarray, n_examples: int
    ) -> list[plots.Job]:
        """Images: each class's mean |SHAP| map, then right and wrong predictions explained; tables:
        the beeswarm, then waterfalls (mistakes first)."""
        from pipeline.explain import jobs, trust

        classes, features = self.summary.class_names, self.summary.feature_names
        shape = self.summary.image_shape
        y_true, y_pred, values, rows = arrays["y_true"], arrays["y_pred"], arrays["values"], arrays["rows"]
        raw = raw_test[rows]
        found: list[plots.Job] = []
        if shape:
            importance = arrays["importance"]
            found.append(
                plots.job("class_importance", importance=importance, image_shape=shape, class_names=classes)
            )
            for group, picks in jobs.split_examples(y_true, y_pred, n_examples).items():
                images, group_values, truth, pred = raw[picks], values[picks], y_true[picks], y_pred[picks]
                if group == "wrong":  # topped up with mistakes outside the sample, explained for this figure
                    images = np.concatenate([images, raw_test[arrays["extra_rows"]]])
                    group_values = np.concatenate([group_values, arrays["extra_values"]])
                    truth = np.concatenate([truth, arrays["extra_y_true"]])
                    pred = np.concatenate([pred, arrays["extra_y_pred"]])
                if len(images):
                    titles = [
                        f"true {classes[t]} / pred {classes[p]}" for t, p in zip(truth, pred, strict=True)
                    ]
                    attributions = trust.for_class(group_values, pred)
                    found.append(
                        plots.job(
                            f"examples_{group}",
                            images=images,
                            attributions=attributions,
                            image_shape=shape,
                            titles=titles,
                        )
                    )
        else:
            found.append(
                plots.job("beeswarm", values=values, data=raw, feature_names=features, class_names=classes)
            )
            chosen = self.pick_examples(y_true, y_pred, n_examples)
            if len(chosen):
                pred = y_pred[chosen]
                found.append(
                    plots.job(
                        "waterfall",
                        attributions=trust.for_class(values[chosen], pred),
                        base=arrays["base"][chosen, pred],
                        data=raw[chosen],
                        feature_names=features,
                        titles=[
                            f"sample {rows[i]}: true {classes[y_true[i]]} / pred {classes[y_pred[i]]}"
                            for i in chosen
                        ],
                    )
                )
        return [*found, *jobs.trust_jobs(arrays, features, classes)]

    def fit_surrogate(
        self,
        predict: Predict,
        X_train: np.ndarray,
        X_test: np.ndarray,
        y_test: np.ndarray,
        config: SurrogateConfig,
        seed: int,
    ) -> Surrogate:
        """Classification trees fitted to the predicted classes; scored by agreement, and per class."""
        import dataclasses

        from sklearn.tree import DecisionTreeClassifier

        from pipeline.explain import surrogate

        outputs = predict(X_test)
        teacher = self.prediction_of(outputs)
        tree = surrogate.fit(
            X_train,
            self.prediction_of(predict(X_train)),
            X_test,
            teacher,
            y_test,
            estimator=DecisionTreeClassifier,
            score=surrogate.agreement,
            max_depth=config.max_depth,
            tolerance=config.tolerance,
            seed=seed,
        )
        per_class = surrogate.class_fidelity(tree.predicted, teacher, outputs.shape[1])
        return dataclasses.replace(tree, class_fidelity=per_class)

    def surrogate_jobs(self, tree: Surrogate, tree_job: plots.Job) -> list[plots.Job]:
        """Fidelity and accuracy per depth, the tree, and its fidelity per predicted class."""
        return [
            plots.job(
                "surrogate_fidelity",
                depths=tree.depths,
                fidelity=tree.fidelity,
                accuracy=tree.accuracy,
                depth=tree.depth,
                network_accuracy=tree.network_accuracy,
            ),
            tree_job,
            plots.job(
                "surrogate_classes",
                class_fidelity=tree.class_fidelity,
                class_names=self.summary.class_names,
            ),
        ]

    def surrogate_record(self, tree: Surrogate, rules: list[Rule]) -> dict[str, Any]:
        """With the network's accuracy and the three classes the tree follows worst."""
        classes = self.summary.class_names
        order = [int(c) for c in np.argsort(np.nan_to_num(tree.class_fidelity, nan=2.0))]
        return {
            **tree.metrics(),
            "network_accuracy": tree.network_accuracy,
            "max_depth": int(tree.depths.max()),
            "rules": [rule.text(classes) for rule in rules],
            "weakest_classes": [
                {"class": classes[c], "fidelity": float(tree.class_fidelity[c])}
                for c in order[:3]
                if np.isfinite(tree.class_fidelity[c])
            ],
        }

    # -- visualize --

    separation_metric = "silhouette"

    def separation(self, points: np.ndarray, labels: np.ndarray) -> float:
        """The silhouette of the classes (stats.silhouette)."""
        from pipeline import stats

        return stats.silhouette(points, labels)

    def output_spec(self, width: int) -> dict[str, Any]:
        return {"kind": "output", "name": "softmax", "width": width, "params": 0}

    def loss_label(self, loss_target: str | None) -> str:
        return "cross-entropy loss"

    def pick_errors(self, predicted: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
        """The misclassified rows, lowest probability of the true class first."""
        from pipeline import stats

        return stats.worst_errors(predicted, y, n)

    def error_pool(self, predicted: np.ndarray, y: np.ndarray) -> tuple[int, str]:
        return int((predicted.argmax(axis=1) != y).sum()), "misclassified test rows"

    def error_metrics(self, predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"n_misclassified": float(self.error_pool(predicted, y)[0])}

    def record_header(self) -> dict[str, Any]:
        return {}

    def error_record(self, predicted: np.ndarray, y: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        classes = self.summary.class_names
        errors = [
            {
                "row": int(i),
                "true": classes[int(y[i])],
                "predicted": classes[int(predicted[i].argmax())],
                "p_true": float(predicted[i, y[i]]),
                "p_predicted": float(predicted[i].max()),
            }
            for i in rows
        ]
        return {"errors": errors, "n_misclassified": self.error_pool(predicted, y)[0]}

    def row_title(self, predicted: np.ndarray, y: np.ndarray, row: int) -> str:
        classes = self.summary.class_names
        return f"true {classes[y[row]]} / pred {classes[predicted[row].argmax()]}"

    def explained_outputs(self, predicted: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The class the network predicted."""
        return np.asarray(predicted[rows].argmax(axis=1))

    def class_means(self, layers: list[np.ndarray], y: np.ndarray) -> list[np.ndarray]:
        from pipeline import stats

        return [stats.class_means(post, y, len(self.summary.class_names)) for post in layers]

    def class_examples(
        self, predicted: np.ndarray, y: np.ndarray, n: int
    ) -> list[tuple[str, int, np.ndarray]]:
        """The classes with a correctly classified test row."""
        right = predicted.argmax(axis=1) == y
        classes = self.summary.class_names
        found = [(name, k, np.flatnonzero((y == k) & right)[:n]) for k, name in enumerate(classes)]
        return [(name, k, rows) for name, k, rows in found if len(rows)]

    # -- report --

    removal_effect = "hurts accuracy"
    ranking_metric = "test_accuracy"
    lower_is_better = (*Task.lower_is_better, "ece")

    @property
    def described(self) -> str:
        return f"{self.summary.n_classes} classes"

    @property
    def explained_output(self) -> str:
        return "the network's score for a class"

    @property
    def explained_average(self) -> str:
        return "score"

    def cards(self, metrics: dict[str, Any]) -> list[dict[str, str]]:
        from pipeline.report.formats import fmt_num, fmt_pct

        return [
            {"label": "test accuracy", "value": fmt_pct(metrics["accuracy"])},
            {"label": "macro F1", "value": fmt_num(metrics["macro_f1"])},
            {"label": "log loss", "value": fmt_num(metrics["log_loss"])},
            {"label": "calibration error (ECE)", "value": fmt_num(metrics["ece"])},
        ]

    def glance(self, evaluation: dict[str, Any]) -> list[str]:
        """How often it is right, its most frequent mistakes, how far its probabilities hold."""
        from pipeline.report.formats import fmt_pct

        m, confusions = evaluation["metrics"], evaluation["top_confusions"]
        sentences = [
            f"The network classifies {fmt_pct(m['accuracy'])} of the {m['n_test']:,} test samples "
            f"correctly (macro F1 {m['macro_f1']:.3f})."
        ]
        if confusions:
            pairs = [f"{c['true']} taken for {c['predicted']} ({c['count']}×)" for c in confusions[:3]]
            sentences.append("Its most frequent mistakes: " + "; ".join(pairs) + ".")
        else:
            sentences.append("It made no mistakes on the test set.")
        ece = m["ece"]
        calibration = (
            "well calibrated: its confidence can be taken at face value"
            if ece < 0.03
            else "somewhat miscalibrated: read its probabilities with care"
            if ece < 0.1
            else "poorly calibrated: its probabilities do not match how often it is right"
        )
        sentences.append(f"It is {calibration} (expected calibration error {ece:.3f}).")
        return sentences

    def surrogate_sentence(self, tree: dict[str, Any]) -> str | None:
        from pipeline.report.formats import fmt_pct

        weakest = tree.get("weakest_classes")
        return (
            f"A decision tree of depth {int(tree['surrogate_depth'])} imitates the network on "
            f"{fmt_pct(tree['surrogate_fidelity'])} of the test samples"
            + (
                f"; it follows it least on class {weakest[0]['class']} ({fmt_pct(weakest[0]['fidelity'])})."
                if weakest
                else "."
            )
        )

    def best_validation(self, training: dict[str, Any]) -> str:
        from pipeline.report.formats import fmt_pct

        return f"validation accuracy {fmt_pct(training['best_val_acc'])}"
