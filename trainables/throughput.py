"""Per-epoch speed and GPU efficiency of a trial: tokens/s, step time, MFU and NVML telemetry.

Counts stay on the device during the epoch (no host-device sync in the hot loop) and are
summed over workers once, at the epoch's logging point.
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist

from trainables.gpu import GpuSampler, cuda_index, mfu, model_dims, peak_tflops, training_flops_per_token


def synced_clock(device: torch.device) -> float:
    """perf_counter once `device` has finished its queued work: CUDA runs asynchronously, so an
    unsynchronised clock stops before the epoch's last kernels (inflating pairs/s and MFU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class EpochMeter:
    def __init__(self, model, device: torch.device, world_size: int):
        self.device, self.world_size = device, world_size
        self.dims = model_dims(model)
        self.gpu = GpuSampler(cuda_index(device)).start()
        self.peak = peak_tflops(self.gpu.device_name)
        self.start_epoch()

    def start_epoch(self) -> None:
        self.tokens = torch.zeros((), dtype=torch.float64, device=self.device)
        self.flops = torch.zeros((), dtype=torch.float64, device=self.device)
        self.started = synced_clock(self.device)

    def count(self, attention_mask: torch.Tensor) -> None:
        """Real (non-padding) tokens of one micro-batch; padding therefore counts against MFU."""
        real = attention_mask.sum()
        self.tokens += real
        self.flops += real * training_flops_per_token(*self.dims, attention_mask.shape[1])

    def train_seconds(self) -> float:
        return synced_clock(self.device) - self.started

    def epoch_metrics(self, train_seconds: float, steps: int) -> dict:
        """Trial-wide figures for the epoch. Every rank must call this: it all-reduces."""
        gpu = self.gpu.epoch_stats()
        summed = torch.stack([self.tokens, self.flops,
                              torch.tensor(gpu.get("energy_kj", 0.0), dtype=torch.float64, device=self.device),
                              torch.tensor(gpu.get("gpu_util_mean", 0.0), dtype=torch.float64, device=self.device)])
        peak_mem = torch.tensor(gpu.get("gpu_mem_peak_gb", 0.0), dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            dist.all_reduce(summed)  # workers must agree: one SUM and one MAX per epoch on every rank
            dist.all_reduce(peak_mem, op=dist.ReduceOp.MAX)
        tokens, flops, energy, util = summed.tolist()
        metrics = {"tokens_per_s": tokens / train_seconds, "step_time_s": train_seconds / max(steps, 1)}
        if self.gpu.available and gpu:
            metrics.update(gpu_util_mean=util / self.world_size, gpu_mem_peak_gb=peak_mem.item(), energy_kj=energy)
            for key in ("gpu_power_mean_w", "sm_clock_mean_mhz"):
                if key in gpu:
                    metrics[key] = gpu[key]
            value = mfu(tokens / train_seconds, flops / max(tokens, 1.0), self.peak and self.peak * self.world_size)
            if value is not None:
                metrics["mfu"] = value
            metrics["gpu"] = self.gpu.device_name or "unknown GPU"
        else:
            metrics["gpu"] = f"none: {self.gpu.unavailable_reason or 'no samples'}"
        return metrics

    def close(self) -> None:
        self.gpu.stop()
