"""A backbone's search space: fixed settings plus a define-by-run Optuna function.

Each optimizer has its own regime: Lion's update is a sign, so every coordinate moves by the
full lr; it wants a learning rate 3-10x lower than AdamW and, because decoupled decay is scaled
by that lr, a weight decay 3-10x higher to keep the same effective decay (Chen et al. 2023).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

OPTIMIZERS = ("adamw", "lion")
SCHEDULERS = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Space:
    name: str
    model: str  # the paper's backbone (HF id)
    tiny_kind: str  # architecture of the tiny random model used by --smoke-test
    lr: dict  # optimizer -> (low, high), log-uniform
    weight_decay: dict  # optimizer -> (low, high), log-uniform
    fixed: dict = field(default_factory=dict)  # TrainConfig keys not searched
    fallback_model: Optional[str] = None  # used, with a notice, when `model` is not available offline
    warmup_ratio: tuple = (0.0, 0.2)
    # Searched as "loss" when there is more than one (trainables/losses.py); listwise needs a batch_size
    # that is a multiple of its group (1 + negatives_per_query judged pairs, or 2 for triples).
    losses: tuple = ("pointwise",)

    def suggest(self, trial, optimizers=OPTIMIZERS) -> dict:
        """Define-by-run: sample one trial's searched keys (all TrainConfig field names)."""
        optimizer = trial.suggest_categorical("optimizer", list(optimizers))
        # Conditional ranges under shared names: each optimizer samples within its own regime.
        trial.suggest_float("lr", *self.lr[optimizer], log=True)
        trial.suggest_float("weight_decay", *self.weight_decay[optimizer], log=True)
        trial.suggest_categorical("scheduler", list(SCHEDULERS))
        trial.suggest_float("warmup_ratio", *self.warmup_ratio)
        if len(self.losses) > 1:
            trial.suggest_categorical("loss", list(self.losses))
        return {}  # constants are merged by the trainable, not returned to Optuna
