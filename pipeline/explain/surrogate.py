"""A decision tree that imitates the network: a global, readable approximation of its decisions.

The seeds list decision trees beside activations and weights as a way to read a network. Here the
network is the teacher: a scikit-learn ``DecisionTreeClassifier`` is fitted to the classes the
network predicts on the training inputs (not to the labels), for every depth 1..``max_depth``.
For regression a ``DecisionTreeRegressor`` is fitted to the network's predicted values instead,
and fidelity and accuracy are R² (to the network's predictions, to the true target); there are no
classes, so no per-class fidelity. The task (pipeline.task) chooses the tree and the score;
``fit`` runs the depths.

- **fidelity**: the share of test samples where tree and network predict the same class;
- **tree accuracy**: the share where the tree predicts the true label;
- **the chosen depth**: the smallest whose fidelity is within ``tolerance`` (1 point by default)
  of the best fidelity over the depths tried: past it, a deeper tree buys almost no agreement;
- per class (as the network predicted it), the fidelity of the chosen tree: where it is low the
  network does something a small tree cannot;
- the chosen tree's largest leaves as rules in words ("if pixel (3, 4) > 0.8 and ... then 7").

Pure: arrays in, a ``Surrogate`` out; no scikit-learn here (the task passes its tree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Train rows the tree is fitted on at most (a seeded draw): MNIST's 60,000 x 784 would take ~10 s
# per depth, and 20,000 rows give the same splits near the root.
MAX_TRAIN_ROWS = 20_000


@dataclass
class Rule:
    conditions: list[str]
    prediction: float  # a class index; for regression the leaf's mean prediction, in target units
    samples: int  # training rows that reach the leaf
    purity: float  # share of them the network put in ``prediction``; regression: their predictions' sd
    regression: bool = False

    def text(self, class_names: list[str]) -> str:
        """The rule in words; for regression ``class_names`` is [target name] (as summary.json has it)."""
        from pipeline.task import fmt  # not at the top: pipeline.task's classes import this module

        premise = " and ".join(self.conditions) if self.conditions else "always"
        if self.regression:
            return (
                f"if {premise} then the network predicts {class_names[0]} ≈ {fmt(self.prediction)} "
                f"({self.samples} training samples; its predictions for them have sd {fmt(self.purity)})"
            )
        return (
            f"if {premise} then {class_names[int(self.prediction)]} ({self.samples} training samples, "
            f"{self.purity:.0%} of them predicted {class_names[int(self.prediction)]} by the network)"
        )


@dataclass
class TreeArrays:
    """A fitted scikit-learn tree as plain arrays (node i: its split feature and threshold, its
    children, -1 for a leaf; the training rows per class that reach it): what the rules, the
    drawing and the report read, so that none of them imports scikit-learn (2 s in a stage)."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: (
        np.ndarray
    )  # (nodes, classes): share of the node's training rows per class; regression: (nodes, 1) mean
    n_samples: np.ndarray
    classes: np.ndarray  # the class label of each column of ``value``; empty for a regression tree
    impurity: np.ndarray | None = None  # regression: variance of the network's predictions per node

    @classmethod
    def of(cls, tree: Any) -> TreeArrays:
        t = tree.tree_
        regression = not hasattr(tree, "classes_")
        return cls(
            feature=np.asarray(t.feature).copy(),
            threshold=np.asarray(t.threshold).copy(),
            left=np.asarray(t.children_left).copy(),
            right=np.asarray(t.children_right).copy(),
            value=np.asarray(t.value)[:, 0, :].copy(),
            n_samples=np.asarray(t.n_node_samples).copy(),
            classes=np.zeros(0, dtype=int) if regression else np.asarray(tree.classes_).copy(),
            impurity=np.asarray(t.impurity).copy() if regression else None,
        )

    @property
    def regression(self) -> bool:
        return self.impurity is not None

    def is_leaf(self, node: int) -> bool:
        return bool(self.left[node] == -1)

    def mean(self, node: int) -> float:
        """A regression tree's prediction at ``node``: the mean of the network's predictions there."""
        return float(self.value[node, 0])

    def spread(self, node: int) -> float:
        """A regression tree's standard deviation of the network's predictions at ``node``."""
        assert self.impurity is not None
        return float(np.sqrt(max(float(self.impurity[node]), 0.0)))

    def prediction(self, node: int) -> int:
        return int(self.classes[int(np.argmax(self.value[node]))])

    def purity(self, node: int) -> float:
        row = self.value[node]
        return float(row.max() / row.sum()) if row.sum() > 0 else 0.0


@dataclass
class Surrogate:
    depths: np.ndarray  # 1..max_depth
    fidelity: np.ndarray  # per depth, on the test split (regression: R² to the network's predictions)
    accuracy: np.ndarray  # per depth: the tree against the true labels (regression: R² to the target)
    depth: int  # chosen
    tree: TreeArrays  # the chosen tree
    class_fidelity: np.ndarray  # (classes,) NaN for a class the network never predicted; regression: empty
    network_accuracy: float  # regression: the network's R² on the test split
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the chosen tree's, test split
    fidelity_rmse: float = float("nan")  # regression: RMSE of the chosen tree to the network, target units

    @property
    def chosen(self) -> int:
        return int(np.flatnonzero(self.depths == self.depth)[0])

    @property
    def regression(self) -> bool:
        return self.tree.regression

    def metrics(self) -> dict[str, float]:
        i = self.chosen
        if self.regression:
            # ``surrogate_fidelity`` keeps the name the report reads; for regression it is the R².
            return {
                "surrogate_depth": float(self.depth),
                "surrogate_fidelity": float(self.fidelity[i]),
                "surrogate_fidelity_r2": float(self.fidelity[i]),
                "surrogate_best_fidelity_r2": float(self.fidelity.max()),
                "surrogate_fidelity_rmse": float(self.fidelity_rmse),
                "surrogate_r2": float(self.accuracy[i]),
            }
        return {
            "surrogate_depth": float(self.depth),
            "surrogate_fidelity": float(self.fidelity[i]),
            "surrogate_accuracy": float(self.accuracy[i]),
            "surrogate_best_fidelity": float(self.fidelity.max()),
        }

    def rows(self) -> list[dict[str, float | int]]:
        """Fidelity and tree accuracy per depth, for `dvc plots`."""
        return [
            {"depth": int(d), "fidelity": float(f), "tree_accuracy": float(a)}
            for d, f, a in zip(self.depths, self.fidelity, self.accuracy, strict=True)
        ]


def choose_depth(depths: np.ndarray, fidelity: np.ndarray, tolerance: float) -> int:
    """The smallest depth whose fidelity is within ``tolerance`` of the best one."""
    good = np.flatnonzero(fidelity >= fidelity.max() - tolerance - 1e-12)
    return int(depths[int(good[0])])


def agreement(truth: np.ndarray, predicted: np.ndarray) -> float:
    """A classification tree's score: the share of rows where ``predicted`` equals ``truth``."""
    return float(np.mean(predicted == truth))


def fit(
    X_train: np.ndarray,
    teacher_train: np.ndarray,
    X_test: np.ndarray,
    teacher_test: np.ndarray,
    y_test: np.ndarray,
    *,
    estimator: Callable[..., Any],
    score: Callable[[np.ndarray, np.ndarray], float],
    max_depth: int,
    tolerance: float,
    seed: int,
) -> Surrogate:
    """Trees of depth 1..max_depth (``estimator(max_depth=, random_state=)``: a scikit-learn
    tree, which the task chooses) fitted to the network's train predictions ``teacher_train``;
    ``score(truth, predicted)`` of each on the test split: fidelity to ``teacher_test``, accuracy
    against ``y_test``. ``predicted`` holds the chosen tree's test predictions."""
    depths = np.arange(1, max_depth + 1)
    trees, fidelity, accuracy = [], [], []
    for d in depths:
        tree = estimator(max_depth=int(d), random_state=seed).fit(X_train, teacher_train)
        predicted = tree.predict(X_test)
        trees.append(tree)
        fidelity.append(score(teacher_test, predicted))
        accuracy.append(score(y_test, predicted))
    fid = np.asarray(fidelity)
    depth = choose_depth(depths, np.nan_to_num(fid, nan=-np.inf), tolerance)
    tree = trees[depth - 1]
    return Surrogate(
        depths=depths,
        fidelity=fid,
        accuracy=np.asarray(accuracy),
        depth=depth,
        tree=TreeArrays.of(tree),
        class_fidelity=np.zeros(0),
        network_accuracy=score(y_test, teacher_test),
        predicted=tree.predict(X_test),
    )


def class_fidelity(predicted: np.ndarray, teacher: np.ndarray, n_classes: int) -> np.ndarray:
    """Per class the network predicted (``teacher``), the share of those rows the tree's
    ``predicted`` agrees on; NaN for a class the network never predicted."""
    per_class = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mine = teacher == c
        if mine.any():
            per_class[c] = float(np.mean(predicted[mine] == c))
    return per_class


def feature_labels(feature_names: list[str], image_shape: tuple[int, int] | None) -> list[str]:
    """How rules name a feature: 'pixel (row, col)' for images, the column's name for tables."""
    if image_shape is None:
        return list(feature_names)
    width = image_shape[1]
    return [f"pixel ({i // width}, {i % width})" for i in range(image_shape[0] * width)]


def raw_threshold(feature: int, threshold: float, scaled: np.ndarray, raw: np.ndarray) -> float | None:
    """``threshold`` (in the scaled units the network and the tree read) in the feature's own
    units, interpolated from rows seen both ways; None where the scaling is not increasing for
    this feature (the rule then speaks in scaled units)."""
    order = np.argsort(scaled[:, feature], kind="stable")
    s, r = scaled[order, feature], raw[order, feature]
    if np.any(np.diff(r) < -1e-6 * (np.abs(r).max() + 1)):
        return None
    return float(np.interp(threshold, s, r))


def rules(
    tree: TreeArrays,
    labels: list[str],
    n_rules: int,
    units: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Rule]:
    """The ``n_rules`` leaves reached by most training rows, as rules. Conditions on one feature
    are merged into one range; ``units`` (scaled rows, the same rows unscaled) states thresholds
    in the feature's own units where the scaling allows."""
    found: list[Rule] = []

    def condition(feature: int, low: float, high: float) -> str:
        lo, hi, suffix = low, high, ""
        if units is not None:
            conv = [raw_threshold(feature, v, *units) if np.isfinite(v) else v for v in (low, high)]
            if conv[0] is not None and conv[1] is not None:
                lo, hi = float(conv[0]), float(conv[1])
            else:
                suffix = " (scaled)"
        name = labels[feature]
        if np.isfinite(lo) and np.isfinite(hi):
            return f"{lo:.3g} < {name} <= {hi:.3g}{suffix}"
        if np.isfinite(lo):
            return f"{name} > {lo:.3g}{suffix}"
        return f"{name} <= {hi:.3g}{suffix}"

    def walk(node: int, bounds: dict[int, tuple[float, float]]) -> None:
        if tree.is_leaf(node):
            conditions = [condition(f, lo, hi) for f, (lo, hi) in sorted(bounds.items())]
            samples = int(tree.n_samples[node])
            if tree.regression:
                found.append(Rule(conditions, tree.mean(node), samples, tree.spread(node), regression=True))
            else:
                found.append(Rule(conditions, tree.prediction(node), samples, tree.purity(node)))
            return
        feature, threshold = int(tree.feature[node]), float(tree.threshold[node])
        low, high = bounds.get(feature, (-np.inf, np.inf))
        walk(int(tree.left[node]), {**bounds, feature: (low, min(high, threshold))})
        walk(int(tree.right[node]), {**bounds, feature: (max(low, threshold), high)})

    walk(0, {})
    found.sort(key=lambda rule: -rule.samples)
    return found[:n_rules]


def threshold_texts(tree: TreeArrays, units: tuple[np.ndarray, np.ndarray] | None) -> list[str]:
    """Each node's threshold as text, in the feature's own units where the scaling allows
    (see raw_threshold; marked "(scaled)" where it does not); "" for leaves."""
    out = []
    for node in range(len(tree.feature)):
        if tree.is_leaf(node):
            out.append("")
            continue
        value = float(tree.threshold[node])
        raw = raw_threshold(int(tree.feature[node]), value, *units) if units is not None else value
        out.append(f"{value:.3g} (scaled)" if raw is None else f"{raw:.3g}")
    return out


def split_features(tree: TreeArrays) -> list[int]:
    """The features the tree splits on, in the order its nodes are numbered (root first)."""
    seen: list[int] = []
    for node in range(len(tree.feature)):
        f = int(tree.feature[node])
        if not tree.is_leaf(node) and f not in seen:
            seen.append(f)
    return seen
