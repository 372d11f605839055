"""Random streams of a trial's workers: one dropout stream per rank, saved and restored exactly.

Weights start equal on every rank (same seed, then DDP's broadcast); dropout must not: with the
same stream on every rank, the ranks' masks would be identical and the global batch would see
world_size copies of one mask pattern instead of independent ones.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def rank_seed(seed: int, rank: int) -> int:
    """Distinct for every (seed, rank), so neither seeds nor ranks share a stream."""
    return seed * 100_003 + rank


def seed_rank(seed: int, rank: int) -> None:
    torch.manual_seed(rank_seed(seed, rank))  # seeds the CPU and every CUDA device


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def gather_rng_states(device: torch.device, world_size: int) -> list[dict]:
    """Every rank's RNG state, in rank order. A collective: every rank must call it."""
    if world_size == 1:
        return [rng_state(device)]
    states = [None] * world_size
    dist.all_gather_object(states, rng_state(device))
    return states


def restore_rng(state: dict, rank: int, world_size: int, device: torch.device) -> bool:
    """This rank's saved streams; False when the checkpoint holds none for this world size
    (an older checkpoint, or a trial resumed on a different number of workers)."""
    states = state.get("rng_states")
    if not states or len(states) != world_size:
        return False
    mine = states[rank]
    torch.set_rng_state(mine["cpu"])
    if device.type == "cuda" and "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], device)
    return True
