import math

import pytest
import torch
from lion_pytorch import Lion as PerParameterLion
from lion_pytorch.foreach import Lion

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


def _train(optimizer_for, steps=5):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 1))
    optimizer = optimizer_for(model)
    data = torch.randn(32, 6)
    for _ in range(steps):
        model(data).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_fast_kernels_update_like_the_reference(name):
    """Fused AdamW / foreach Lion must be the same optimiser as the per-parameter reference, and
    their state must load into it (checkpoints written by either stay resumable)."""
    from trainables.optim import parameter_groups
    cfg = TrainConfig(model="m", data_dir="d", optimizer=name, lr=1e-2, weight_decay=0.1)
    ours, our_optimizer = _train(lambda m: build_optimizer(m, cfg))
    if name == "adamw":
        assert our_optimizer.defaults["fused"] is True  # CPU parameters get the fused kernel
        reference = lambda m: torch.optim.AdamW(parameter_groups(m, 0.1), lr=1e-2, foreach=False)
    else:
        reference = lambda m: PerParameterLion(parameter_groups(m, 0.1), lr=1e-2, betas=(0.9, 0.99))
    theirs, their_optimizer = _train(reference)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    their_optimizer.load_state_dict(our_optimizer.state_dict())
    our_optimizer.load_state_dict(their_optimizer.state_dict())
