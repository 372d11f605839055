"""Optimisers (torch AdamW, lion-pytorch's Lion) and warmup + decay learning-rate schedules."""
from __future__ import annotations

import math

import torch
from lion_pytorch.foreach import Lion

from trainables.config import TrainConfig

DEFAULT_BETAS = {"adamw": (0.9, 0.999), "lion": (0.9, 0.99)}


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: biases and norm weights (1-D tensors) are left undecayed, as is standard."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    default1, default2 = DEFAULT_BETAS[cfg.optimizer]
    betas = (cfg.beta1 if cfg.beta1 is not None else default1, cfg.beta2 if cfg.beta2 is not None else default2)
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.optimizer == "lion":
        # lion-pytorch's multi-tensor (foreach) Lion: the same update and state ("exp_avg") as its
        # per-parameter Lion, in a few kernels instead of one per parameter; decay is decoupled and
        # scaled by lr, like AdamW: p -= lr * wd * p.
        return Lion(groups, lr=cfg.lr, betas=betas)
    # The fused kernel does the whole update in one pass over each tensor, where the default
    # per-parameter loop launches kernels per parameter (figures: docs/benchmarks.md).
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, fused=fused_adamw_supported(model))


def fused_adamw_supported(model: torch.nn.Module) -> bool:
    """torch has fused AdamW kernels for floating-point parameters on CUDA and CPU (and a few others)."""
    params = list(model.parameters())
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cuda", "cpu") for p in params)


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, kind: str) -> float:
    """Factor applied to the peak lr at optimiser step `step` (0-based): linear warmup, then decay."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    # total_steps counts optimiser steps of the global batch, so it already accounts for world
    # size and gradient accumulation: the schedule is the same on 1 or N workers.
    warmup_steps = int(round(cfg.warmup_ratio * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, warmup_steps, cfg.scheduler))
