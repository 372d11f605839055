"""The training losses against hand-computed values."""
import math

import pytest
import torch

from trainables.data import micro_loss_weight
from trainables.errors import UsageError
from trainables.losses import (group_size, listwise_softmax_ce, margin_mse, micro_loss, pointwise_bce)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_pointwise_is_the_mean_binary_cross_entropy():
    # −log σ(0) = ln 2 for the positive; −log(1 − σ(2)) = ln(1 + e²) for the negative
    expected = (math.log(2) + math.log(1 + math.e ** 2)) / 2
    assert pointwise_bce(t(0.0, 2.0), t(1.0, 0.0)).item() == pytest.approx(expected, rel=1e-6)


def test_listwise_is_minus_the_log_softmax_of_each_groups_positive():
    # group 1: positive first, scores 2, 1, 0: −log(e² / (e² + e + 1)) = log(1 + e⁻¹ + e⁻²)
    # group 2: positive in the middle, all scores equal: log 3
    expected = (math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(3)) / 2
    loss = listwise_softmax_ce(t(2, 1, 0, 0, 0, 0), t(1, 0, 0, 0, 1, 0), group=3)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # two positives share the target: −(½ log ½ + ½ log ½) = log 2 at equal scores
    assert listwise_softmax_ce(t(0, 0), t(1, 1), group=2).item() == pytest.approx(math.log(2), rel=1e-6)


def test_listwise_gradient_raises_the_positive_and_lowers_the_negatives():
    logits = t(0, 0, 0).requires_grad_()
    listwise_softmax_ce(logits, t(1, 0, 0), group=3).backward()
    # d/ds of −log softmax: softmax − target = (1/3 − 1, 1/3, 1/3)
    assert logits.grad.tolist() == pytest.approx([-2 / 3, 1 / 3, 1 / 3])


def test_margin_mse_compares_the_models_margins_with_the_teachers():
    # student margins 3 − 1 = 2 and 0 − 2 = −2; teacher margins 5 − 4 = 1 and 1 − 1 = 0
    assert margin_mse(t(3, 1, 0, 2), t(5, 4, 1, 1)).item() == pytest.approx(((2 - 1) ** 2 + (-2 - 0) ** 2) / 2)
    assert margin_mse(t(7, 2), t(9, 4)).item() == 0.0  # the same margin at another offset costs nothing


def test_micro_batches_of_whole_groups_weighted_by_share_give_the_whole_batch_loss():
    logits, labels = torch.randn(12), t(*[1, 0, 0] * 4)
    whole = micro_loss("listwise", logits, labels, 3)
    parts = sum(micro_loss("listwise", logits[a:b], labels[a:b], 3) * micro_loss_weight(b - a, 12, 1)
                for a, b in ((0, 3), (3, 12)))
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)


def test_micro_loss_dispatches_by_name():
    logits, labels = t(0.5, -1.0), t(1.0, 0.0)
    assert micro_loss("pointwise", logits, labels, 1) == pointwise_bce(logits, labels)
    assert micro_loss("margin_mse", logits, t(2.0, 0.0), 2) == margin_mse(logits, t(2.0, 0.0))
    with pytest.raises(UsageError, match="unknown loss"):
        micro_loss("hinge", logits, labels, 1)


def test_group_sizes():
    assert group_size("pointwise", triples=False, negatives_per_query=8) == 1
    assert group_size("listwise", triples=False, negatives_per_query=8) == 9  # a positive + its 8 negatives
    assert group_size("listwise", triples=True, negatives_per_query=8) == 2  # a triple's positive and negative
    assert group_size("margin_mse", triples=True, negatives_per_query=8) == 2
