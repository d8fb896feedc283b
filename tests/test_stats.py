"""pipeline/stats.py on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import stats


def test_dead_fraction_counts_units_never_positive() -> None:
    acts = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, -0.0],
        ]
    )
    # Units 0 and 3 never fire; unit 1 and 2 fire once each.
    assert stats.dead_fraction(acts) == pytest.approx(0.5)
    assert stats.dead_fraction(np.ones((5, 3))) == 0.0
    assert stats.dead_fraction(np.zeros((5, 3))) == 1.0
    assert stats.dead_fraction(np.zeros((0, 3))) == 0.0


def test_saturation_mask_for_sigmoid_and_tanh() -> None:
    sig = np.array([0.005, 0.5, 0.995, 0.02])
    assert stats.saturated_mask(sig, "sigmoid", 0.01).tolist() == [True, False, True, False]
    tanh = np.array([-0.999, 0.98, 0.995, 0.0])
    assert stats.saturated_mask(tanh, "tanh", 0.01).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="relu"):
        stats.saturated_mask(sig, "relu")


def test_saturated_fraction_needs_most_rows() -> None:
    # 10 rows, 3 units: unit 0 saturated on all rows, unit 1 on 9 of 10, unit 2 on 8 of 10.
    acts = np.full((10, 3), 0.999)
    acts[0, 1] = 0.5
    acts[:2, 2] = 0.5
    assert stats.saturated_fraction(acts, "sigmoid", 0.01, share=0.9) == pytest.approx(2 / 3)
    assert stats.saturated_fraction(acts, "sigmoid", 0.01, share=1.0) == pytest.approx(1 / 3)
    assert stats.saturated_fraction(-acts, "tanh", 0.01, share=0.8) == pytest.approx(1.0)


def test_inactive_fraction_dispatches_on_the_activation() -> None:
    acts = np.array([[0.0, 0.999], [0.0, 0.999]])
    assert stats.inactive_fraction(acts, "relu") == pytest.approx(0.5)
    assert stats.inactive_fraction(acts, "sigmoid") == pytest.approx(1.0)  # 0 and 0.999 both saturated
    assert stats.inactive_fraction(acts, "tanh") == pytest.approx(0.5)  # tanh 0 is its steepest point


def test_rectifiers_are_dead_and_bounded_activations_saturated() -> None:
    # GELU/SiLU/leaky ReLU outputs are positive exactly where their inputs are: never positive is dead.
    acts = np.array([[-0.1, 0.5], [-0.17, 0.0]])
    for name in ("relu", "leakyrelu", "elu", "selu", "gelu", "silu", "softplus"):
        assert stats.inactive_statistic(name) == "dead"
        assert stats.inactive_fraction(acts, name) == pytest.approx(0.5)
    assert [stats.inactive_statistic(name) for name in ("sigmoid", "tanh")] == ["saturated", "saturated"]


def test_class_means_by_hand() -> None:
    acts = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    y = np.array([0, 0, 2])
    means = stats.class_means(acts, y, 3)
    assert means[0].tolist() == [2.0, 1.0]
    assert np.isnan(means[1]).all()  # no rows of class 1: unknown, not "silent"
    assert means[2].tolist() == [5.0, 4.0]


def test_unit_order_groups_units_by_preferred_class() -> None:
    # 2 classes x 4 units: unit 0 prefers class 1 weakly, unit 1 class 0, unit 2 class 1 strongly,
    # unit 3 is flat.
    means = np.array([[0.0, 5.0, 0.0, 1.0], [1.0, 0.0, 9.0, 1.0]])
    order = stats.unit_order(means)
    assert order[0] == 1  # the class-0 unit first
    assert set(order[1:3].tolist()) == {0, 2}
    assert order[3] == 3  # the flat unit last


def test_unit_order_sorts_by_strength_within_a_class() -> None:
    # 3 classes; units 0 and 1 both prefer class 0, unit 1 far more sharply.
    means = np.array([[2.0, 9.0], [1.0, 0.0], [1.5, 0.0]])
    assert stats.unit_order(means).tolist() == [1, 0]


def test_weight_quantiles_of_a_known_range() -> None:
    values = np.arange(101, dtype=np.float64).reshape(1, 101)  # 0..100
    assert stats.quantiles(values) == pytest.approx([5.0, 25.0, 50.0, 75.0, 95.0])
    assert stats.quantiles(np.array([1.0, 3.0]), (0.5,)) == [2.0]


def test_worst_errors_order_and_cap() -> None:
    probs = np.array(
        [
            [0.9, 0.1],  # y=0, right
            [0.7, 0.3],  # y=1, wrong: p(true)=0.3
            [0.95, 0.05],  # y=1, wrong: p(true)=0.05
            [0.2, 0.8],  # y=1, right
            [0.4, 0.6],  # y=0, wrong: p(true)=0.4
        ]
    )
    y = np.array([0, 1, 1, 1, 0])
    assert stats.worst_errors(probs, y, 10).tolist() == [2, 1, 4]
    assert stats.worst_errors(probs, y, 2).tolist() == [2, 1]
    assert stats.worst_errors(probs[[0, 3]], y[[0, 3]], 5).tolist() == []


def test_silhouette_separated_and_single_class() -> None:
    points = np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]])
    assert stats.silhouette(points, np.array([0, 0, 1, 1])) > 0.95
    assert np.isnan(stats.silhouette(points, np.zeros(4, dtype=int)))


def test_subsample_is_seeded_sorted_and_capped() -> None:
    assert stats.subsample(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
    picked = stats.subsample(100, 10, 3)
    assert len(picked) == 10 and len(set(picked.tolist())) == 10
    assert (np.diff(picked) > 0).all()
    assert picked.tolist() == stats.subsample(100, 10, 3).tolist()
