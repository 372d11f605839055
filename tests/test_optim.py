import math

import pytest
import torch
from lion_pytorch import Lion

from trainables.config import TrainConfig
from trainables.optim import build_optimizer, build_scheduler, lr_multiplier


def test_warmup_then_linear_decay():
    values = [lr_multiplier(s, total_steps=10, warmup_steps=2, kind="linear") for s in range(10)]
    assert values[:2] == [0.5, 1.0]
    assert values[2] == 1.0 and values[-1] == pytest.approx(1 / 8)
    assert all(a >= b for a, b in zip(values[1:], values[2:]))


def test_cosine_and_constant():
    assert lr_multiplier(5, 10, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_multiplier(9, 10, 0, "constant") == 1.0


@pytest.mark.parametrize("name,cls", [("adamw", torch.optim.AdamW), ("lion", Lion)])
def test_optimizer_and_decay_groups(name, cls):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    cfg = TrainConfig(model="m", data_dir="d", optimizer=name, lr=1e-3, weight_decay=0.5)
    optimizer = build_optimizer(model, cfg)
    assert isinstance(optimizer, cls)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    scheduler = build_scheduler(optimizer, cfg, total_steps=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_multiplier(0, 10, 1, "linear"))
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3)
