"""A backbone's search space: fixed settings plus a define-by-run Optuna function.

Each optimizer samples its own regime under its own Optuna names (`adamw_lr`, `lion_lr`, ...), so
TPE fits a separate density per optimizer instead of one over two regimes; trials receive the
TrainConfig keys (`lr`, `weight_decay`, ...): train_config() maps the names, optuna_params() maps
a preset's reference configs back. The regimes (regimes() below, one call per backbone):

- Lion's update is a sign, so every coordinate moves by the full lr: it wants a learning rate
  3-10x lower than AdamW and, because decoupled decay is scaled by that lr, a weight decay 3-10x
  higher to keep the same effective decay (Chen et al. 2023); beta2 0.99 or the paper's 0.98.
- APOLLO and APOLLO-Mini rescale the raw gradient to approximate AdamW's update, so they keep
  AdamW's lr and decay (Zhu et al. 2024).
- Muon's lr is in its own units (torch's "original" adjustment): an orthogonalised update has an
  RMS of ~1/sqrt(width), and matching AdamW's ~0.2 (Liu et al. 2025) takes 0.2·sqrt(width), ~4-6x
  AdamW's lr at widths 384-768, so its range is AdamW's times 5. Its AdamW part (embeddings,
  norms, biases, head) samples AdamW's lr as `aux_lr`; one weight decay, AdamW's range, for both.
- Schedule-Free AdamW takes 1-10x the lr of scheduled AdamW (Defazio et al. 2024) and runs with a
  constant schedule (warmup still searched): it averages its own iterates instead of decaying.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from trainables.config import OPTIMIZERS, SCHEDULE_FREE, SCHEDULERS

DEFAULT_OPTIMIZERS = ("adamw", "lion")  # the paper's comparison; search.run --optimizers widens it
LION_BETA2 = (0.98, 0.99)
WSD_DECAY_RATIO = (0.1, 0.3)  # Hägele et al. 2024: a 10-20% cooldown matches cosine
MUON_LR_FACTOR = 5.0  # RMS matching (above): Muon's lr units per AdamW lr unit
SCHEDULE_FREE_LR_FACTOR = (1.0, 10.0)
OWN_KEYS = ("lr", "weight_decay", "beta2", "aux_lr")  # sampled per optimizer, as `<optimizer>_<key>`


def regimes(adamw_lr: tuple, adamw_wd: tuple, lion_lr: tuple, lion_wd: tuple) -> dict:
    """Space's lr and weight_decay: every optimizer's ranges from a backbone's AdamW and Lion ranges."""
    low, high = adamw_lr
    lr = {"adamw": adamw_lr, "lion": lion_lr, "apollo": adamw_lr, "apollo_mini": adamw_lr,
          "muon": (low * MUON_LR_FACTOR, high * MUON_LR_FACTOR),
          "adamw_schedulefree": (low * SCHEDULE_FREE_LR_FACTOR[0], high * SCHEDULE_FREE_LR_FACTOR[1])}
    weight_decay = {name: lion_wd if name == "lion" else adamw_wd for name in OPTIMIZERS}
    return {"lr": lr, "weight_decay": weight_decay}


def train_config(params: dict) -> dict:
    """A trial's Optuna params as TrainConfig keys: `lion_lr` -> `lr`, `muon_aux_lr` -> `aux_lr`;
    a schedule-free optimizer gets scheduler 'constant', which it does not sample."""
    prefix = f"{params['optimizer']}_"
    config = {name[len(prefix):] if name.startswith(prefix) and name[len(prefix):] in OWN_KEYS else name: value
              for name, value in params.items()}
    if params["optimizer"] in SCHEDULE_FREE:
        config["scheduler"] = "constant"
    return config


def optuna_params(config: dict) -> dict:
    """The inverse of train_config, for configs enqueued as trials (a preset's references)."""
    optimizer = config["optimizer"]
    return {f"{optimizer}_{key}" if key in OWN_KEYS else key: value for key, value in config.items()
            if not (key == "scheduler" and optimizer in SCHEDULE_FREE)}


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

    def suggest(self, trial, optimizers=DEFAULT_OPTIMIZERS) -> dict:
        """Define-by-run: sample one trial's searched keys under Optuna names (train_config maps them)."""
        optimizer = trial.suggest_categorical("optimizer", list(optimizers))
        trial.suggest_float(f"{optimizer}_lr", *self.lr[optimizer], log=True)
        trial.suggest_float(f"{optimizer}_weight_decay", *self.weight_decay[optimizer], log=True)
        if optimizer == "lion":
            trial.suggest_categorical("lion_beta2", list(LION_BETA2))
        if optimizer == "muon":
            trial.suggest_float("muon_aux_lr", *self.lr["adamw"], log=True)
        scheduler = "constant" if optimizer in SCHEDULE_FREE else trial.suggest_categorical("scheduler", list(SCHEDULERS))
        trial.suggest_float("warmup_ratio", *self.warmup_ratio)
        if scheduler == "wsd":
            trial.suggest_float("wsd_decay_ratio", *WSD_DECAY_RATIO)
        if len(self.losses) > 1:
            trial.suggest_categorical("loss", list(self.losses))
        return {}  # constants are merged by the trainable, not returned to Optuna
