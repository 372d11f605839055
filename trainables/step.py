"""One optimiser step of a worker: forward and backward over its micro-batches, clip, step.

The loop and benchmarks/overhead.py call this same function, so what is benchmarked is what trains.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch

from trainables.data import micro_loss_weight
from trainables.losses import micro_loss


@dataclass(frozen=True)
class StepSettings:
    batch_size: int  # the global batch: pairs per optimiser step over every worker
    world_size: int
    grad_clip: float = 0.0  # 0: no clipping
    autocast_dtype: Optional[torch.dtype] = None  # None: full fp32
    loss: str = "pointwise"  # trainables/losses.py
    group: int = 1  # pairs per listwise group: every micro-batch holds whole groups


def train_step(model, micro_batches, optimizer, scheduler, settings: StepSettings) -> torch.Tensor:
    """micro_batches: this worker's [(inputs, labels), ...] for one step. Returns its weighted
    loss, detached: averaged over the workers it is the global batch's mean loss."""
    device_type = next(iter(micro_batches[0][0].values())).device.type
    total = torch.zeros((), device=micro_batches[0][1].device)
    for index, (inputs, labels) in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        # DDP all-reduces gradients on the last micro-batch of a step only.
        with nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            with torch.autocast(device_type, dtype=settings.autocast_dtype,
                                enabled=settings.autocast_dtype is not None):
                logits = model(**inputs).logits.view(-1).float()
            weight = micro_loss_weight(len(labels), settings.batch_size, settings.world_size)
            # Groups are whole in each micro-batch, so its share of pairs is also its share of groups.
            loss = micro_loss(settings.loss, logits, labels, settings.group) * weight
            loss.backward()
        total += loss.detach()
    if settings.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total
