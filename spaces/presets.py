"""Presets: published fixed settings, run as reference trials beside a search.

`paper` is our reading of the 2025 Lion-vs-AdamW cross-encoder paper: global batch 64, 3 epochs,
BF16, one shared learning rate for both optimizers (2e-5; ModernBERT 2e-6 with a cosine schedule),
the AdamW baseline without a scheduler, no warmup. The paper does not state a weight decay; we
use 0.01 for both, the common transformers default. With `--preset paper` these settings also
become every search trial's fixed settings, so the references and the tuned trials compare
under the same batch and epoch budget.
"""
from __future__ import annotations

from dataclasses import dataclass

from trainables.errors import UsageError


@dataclass(frozen=True)
class Preset:
    name: str
    fixed: dict  # TrainConfig keys applied to every trial of the search
    reference: dict  # space name -> list of searched-key configs evaluated first


def _paper_config(space: str, optimizer: str) -> dict:
    modernbert = space == "modernbert"
    config = {"optimizer": optimizer, "lr": 2e-6 if modernbert else 2e-5, "weight_decay": 0.01,
              "scheduler": "cosine" if modernbert else "constant", "warmup_ratio": 0.0}
    # lion-pytorch's default beta2, which the space would otherwise sample
    return {**config, "beta2": 0.99} if optimizer == "lion" else config


PRESETS = {
    "paper": Preset(
        name="paper",
        fixed=dict(batch_size=64, epochs=3, bf16=True),
        reference={space: [_paper_config(space, opt) for opt in ("adamw", "lion")]
                   for space in ("minilm", "gte", "modernbert")},
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
