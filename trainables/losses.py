"""Training losses of one micro-batch's logits (one score per pair).

pointwise: binary cross-entropy of each pair's label. listwise: softmax cross-entropy over each
group of `group` consecutive pairs, a query's positive and its k hard negatives (the batches keep
groups whole: trainables.data.worker_batches). margin_mse: MarginMSE (Hofstätter et al. 2020),
the squared difference between the model's margin s(q, p+) − s(q, p−) and a teacher's, over
consecutive (positive, negative) pairs; its targets are the teacher's scores, not labels (TrainConfig
refuses it until training data can carry them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.errors import UsageError

def pointwise_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels)


def listwise_softmax_ce(logits: torch.Tensor, labels: torch.Tensor, group: int) -> torch.Tensor:
    """Mean over groups of −Σ t·log softmax(s), t the group's labels normalised to sum 1: with one
    positive, minus the log of the positive's softmax probability among its group."""
    scores, targets = logits.view(-1, group), labels.view(-1, group)
    return F.cross_entropy(scores, targets / targets.sum(dim=1, keepdim=True))


def margin_mse(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Pairs 2i and 2i+1 are (q, p+) and (q, p−) of one triple; teacher: the teacher's scores of the same pairs."""
    student, target = logits.view(-1, 2), teacher.view(-1, 2)
    return F.mse_loss(student[:, 0] - student[:, 1], target[:, 0] - target[:, 1])


def micro_loss(loss: str, logits: torch.Tensor, targets: torch.Tensor, group: int) -> torch.Tensor:
    """The mean loss of one micro-batch (whole groups of `group` pairs for listwise and margin_mse)."""
    if loss == "pointwise":
        return pointwise_bce(logits, targets)
    if loss == "listwise":
        return listwise_softmax_ce(logits, targets, group)
    if loss == "margin_mse":
        return margin_mse(logits, targets)
    raise UsageError(f"unknown loss {loss!r}")


def group_size(loss: str, triples: bool, negatives_per_query: int) -> int:
    """Pairs per group that a micro-batch must keep together: 1 (pointwise), 2 for a triple's
    (positive, negative), or a judged query's positive and its negatives_per_query negatives."""
    if loss == "pointwise":
        return 1
    return 2 if triples or loss == "margin_mse" else 1 + negatives_per_query


def config_group(cfg) -> int:
    """group_size of a TrainConfig, before its data is read (triples: as load_trial_data decides)."""
    from trainables.triples import find_triples
    triples = cfg.training_data == "triples" or (cfg.training_data == "auto" and find_triples(cfg.data_dir) is not None)
    return group_size(cfg.loss, triples, cfg.negatives_per_query)
