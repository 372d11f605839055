"""Optimisers, one small builder each with the update math left to its library, and the
learning-rate schedules (warmup, then constant, linear, cosine or warmup-stable-decay).

adamw: torch's fused AdamW. lion: lion-pytorch. apollo, apollo_mini: apollo-torch's APOLLO AdamW,
low-rank on the encoder's hidden matrices. muon: torch.optim.Muon on those matrices, AdamW on
the rest (embeddings, norms, biases, pooler and head). adamw_schedulefree: schedulefree's
AdamWScheduleFree, which evaluates at an average of its iterates (evaluation_weights below).
Every optimiser leaves 1-D parameters (biases, norm weights) undecayed.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from lion_pytorch.foreach import Lion

from trainables.config import TrainConfig
from trainables.errors import UsageError

DEFAULT_BETAS = {"lion": (0.9, 0.99)}  # every other optimiser: AdamW's (0.9, 0.999)
# The APOLLO paper's settings (its pre-training scripts): APOLLO rank 256 with channel-wise scaling,
# APOLLO-Mini rank 1 with one scale per tensor and scale 128; random projections renewed every 200 steps.
APOLLO_SETTINGS = {
    "apollo": dict(rank=256, scale_type="channel", scale=1.0),
    "apollo_mini": dict(rank=1, scale_type="tensor", scale=128.0),
}
APOLLO_PROJECTION = dict(proj="random", proj_type="std", update_proj_gap=200)


def betas(cfg: TrainConfig) -> tuple[float, float]:
    default1, default2 = DEFAULT_BETAS.get(cfg.optimizer, (0.9, 0.999))
    return (cfg.beta1 if cfg.beta1 is not None else default1, cfg.beta2 if cfg.beta2 is not None else default2)


def parameter_groups(model: torch.nn.Module, weight_decay: float, exclude=()) -> list[dict]:
    """Decay matrices only: biases and norm weights (1-D tensors) are left undecayed, as is standard.
    Parameters in `exclude` (another optimiser's) are left out."""
    taken = {id(p) for p in exclude}
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad and id(param) not in taken:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights of the Linear layers in the encoder's repeated blocks (the base model's
    ModuleLists): attention and MLP matrices. Embeddings, pooler and head are not in a block."""
    base = getattr(model, "base_model", model)
    found, seen = [], set()
    for blocks in (m for m in base.modules() if isinstance(m, torch.nn.ModuleList)):
        for module in blocks.modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, torch.nn.Linear) and weight.requires_grad and id(weight) not in seen:
                seen.add(id(weight))
                found.append(weight)
    return found


def fused_adamw_supported(model: torch.nn.Module) -> bool:
    """torch has fused AdamW kernels for floating-point parameters on CUDA and CPU (and a few others)."""
    params = list(model.parameters())
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cuda", "cpu") for p in params)


def adamw(model, cfg: TrainConfig):
    # The fused kernel does the whole update in one pass over each tensor, where the default
    # per-parameter loop launches kernels per parameter (figures: docs/benchmarks.md).
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=betas(cfg),
                             fused=fused_adamw_supported(model))


def lion(model, cfg: TrainConfig):
    # lion-pytorch's multi-tensor (foreach) Lion: the same update and state ("exp_avg") as its
    # per-parameter Lion, in a few kernels; decay is decoupled and scaled by lr, like AdamW's.
    return Lion(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=betas(cfg))


def apollo(model, cfg: TrainConfig):
    from apollo_torch import APOLLOAdamW  # imports bitsandbytes (seconds): only when used
    matrices = hidden_matrices(model)
    groups = parameter_groups(model, cfg.weight_decay, exclude=matrices)
    groups.append({"params": matrices, "weight_decay": cfg.weight_decay, **APOLLO_PROJECTION,
                   **APOLLO_SETTINGS[cfg.optimizer]})
    return APOLLOAdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=betas(cfg))


def muon(model, cfg: TrainConfig):
    matrices = hidden_matrices(model)
    if not matrices:
        raise UsageError("optimizer 'muon': the model has no encoder blocks with Linear layers")
    rest = parameter_groups(model, cfg.weight_decay, exclude=matrices)
    return Chained([torch.optim.Muon(matrices, lr=cfg.lr, weight_decay=cfg.weight_decay),
                    torch.optim.AdamW(rest, lr=cfg.aux_lr, betas=betas(cfg), fused=fused_adamw_supported(model))])


def adamw_schedulefree(model, cfg: TrainConfig):
    import schedulefree
    # Warmup comes from build_scheduler: the same (k + 1) / warmup factor as the optimiser's own.
    return schedulefree.AdamWScheduleFree(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=betas(cfg))


BUILDERS = {"adamw": adamw, "lion": lion, "apollo": apollo, "apollo_mini": apollo, "muon": muon,
            "adamw_schedulefree": adamw_schedulefree}


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return BUILDERS[cfg.optimizer](model, cfg)


class Chained(torch.optim.Optimizer):
    """Optimisers over disjoint parameters stepped as one, so the loop, the lr schedule and the
    checkpoints see a single optimiser; the param_groups are the members' own group dicts."""

    def __init__(self, optimizers):
        self.optimizers = list(optimizers)
        super().__init__(self._member_groups(), {})

    def _member_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True):
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        self.param_groups = self._member_groups()  # loading replaced every member's group dicts


def members(optimizer) -> list:
    return list(getattr(optimizer, "optimizers", [optimizer]))


def load_optimizer_state(optimizer, state: dict) -> None:
    """load_state_dict, then tensors held by objects in the state (APOLLO's projectors) moved to
    their parameter's device: torch moves only the state's own tensors."""
    optimizer.load_state_dict(state)
    for member in members(optimizer):
        for param, per_param in member.state.items():
            for value in per_param.values():
                for name, held in list(getattr(value, "__dict__", {}).items()):
                    if isinstance(held, torch.Tensor):
                        setattr(value, name, held.to(param.device))


def state_bytes(optimizer) -> int:
    """Bytes of the tensors an optimiser keeps across steps (moments, Schedule-Free's z, APOLLO's
    low-rank moments and projection matrices), summed over its members."""
    total = 0
    for member in members(optimizer):
        for per_param in member.state.values():
            for value in per_param.values():
                held = [value] if isinstance(value, torch.Tensor) else getattr(value, "__dict__", {}).values()
                total += sum(t.numel() * t.element_size() for t in held if isinstance(t, torch.Tensor))
    return total


@contextmanager
def evaluation_weights(optimizer):
    """Schedule-free optimisers take gradients at one point and are evaluated at another (their
    average): that point is swapped in for dev scoring and checkpoints, then swapped back."""
    switches = callable(getattr(optimizer, "eval", None))
    if switches:
        optimizer.eval()
    try:
        yield
    finally:
        if switches:
            optimizer.train()


def training_weights(optimizer) -> None:
    """Put a schedule-free optimiser in train mode (it refuses to step otherwise); others: nothing."""
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, kind: str, decay_steps: int = 0) -> float:
    """Factor applied to the peak lr at optimiser step `step` (0-based): linear warmup, then decay.
    wsd holds the peak until the last `decay_steps` steps, then decays linearly towards 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    if kind == "wsd":
        decay_start = total_steps - decay_steps
        return 1.0 if step < decay_start else max(0.0, 1.0 - (step - decay_start) / max(1, decay_steps))
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
    decay_steps = int(round(cfg.wsd_decay_ratio * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, warmup_steps, cfg.scheduler, decay_steps))
