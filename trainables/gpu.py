"""GPU telemetry for one training worker (utilisation, memory, power, energy) and MFU arithmetic.

`GpuSampler` reads its worker's GPU through NVML on a background thread and sums it up once per
epoch. Telemetry must never cost a trial: without a GPU, driver or NVML library — or if NVML
fails halfway — the sampler says why in `unavailable_reason` and reports nothing.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from statistics import fmean
from typing import Callable, NamedTuple

import pynvml
import torch

log = logging.getLogger(__name__)

# Dense (non-sparse) bf16 tensor-core peaks in TFLOPS, from NVIDIA's product datasheets; where a
# datasheet prints only the "with sparsity" figure, the dense peak is half of it. GeForce/RTX cards
# use their architecture whitepaper's "FP16/BF16 tensor with FP32 accumulate" figure (what PyTorch's
# bf16 matmuls run at). V100 and T4 have no bf16, so they carry their fp16 tensor peak.
# A10G has no public datasheet; it is commonly given the A10's figure, so treat it as approximate.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.5, "H200 NVL": 835.5, "GH200": 989.5,
    "H100": 989.5, "H100 PCIe": 756.5, "H100 NVL": 835.5,  # plain "H100" is the SXM part
    "A100": 312.0, "A10": 125.0, "A10G": 125.0, "RTX A6000": 154.8,
    "L4": 121.0, "L40": 181.05, "L40S": 362.05,
    "V100": 125.0, "V100-PCIE": 112.0, "V100S": 130.0, "T4": 65.0,
    "RTX 4090": 165.2, "RTX 3090": 71.0,
}

_READINGS = ("util_pct", "mem_bytes", "power_mw", "sm_clock_mhz", "energy_mj")


def peak_tflops(device_name: str | None) -> float | None:
    """Dense bf16 peak of the GPU an NVML device name describes; None when it is not in the table.

    A key matches only as a whole token (so "A10" misses "A100" and "L4" misses "L40S"), and the
    longest matching key wins (so "H100 PCIe" beats "H100")."""
    if not device_name:
        return None
    name = device_name.lower()
    matches = [key for key in PEAK_BF16_TFLOPS
               if re.search(rf"(?<![a-z0-9]){re.escape(key.lower())}(?![a-z0-9])", name)]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] if matches else None


def training_flops_per_token(num_params: int, num_layers: int, hidden: int, seq_len: int) -> int:
    """Forward + backward FLOPs per token (PaLM, appendix B): 6N for the weight matmuls plus
    12·L·H·S for attention scores and values. The attention term counts the full S×S matrix,
    which is exactly right for a bidirectional encoder."""
    return 6 * num_params + 12 * num_layers * hidden * seq_len


def mfu(tokens_per_s: float, flops_per_token: float, world_peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation as a fraction of the peak of every GPU in the run together."""
    if not world_peak_tflops:
        return None
    return tokens_per_s * flops_per_token / (world_peak_tflops * 1e12)


class ModelDims(NamedTuple):
    params: int  # non-embedding parameters
    layers: int
    hidden: int


def model_dims(model) -> ModelDims:
    """The N, L and H of `training_flops_per_token` for a transformers model (DDP-wrapped or not).

    N leaves out embedding tables, as PaLM does: a lookup costs no matmul FLOPs, and a
    cross-encoder has no tied LM head that would turn the word embeddings back into a matmul."""
    model = getattr(model, "module", model)
    embedding = {id(p) for module in model.modules() if isinstance(module, torch.nn.Embedding)
                 for p in module.parameters()}
    params = sum(p.numel() for p in model.parameters() if id(p) not in embedding)
    return ModelDims(params, model.config.num_hidden_layers, model.config.hidden_size)


def cuda_index(device: torch.device) -> int | None:
    """The worker's CUDA ordinal, or None when it trains on the CPU."""
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def nvml_target(cuda_index: int, visible_devices: str | None) -> int | str:
    """The NVML index (int) or UUID (str) of the GPU a process sees as cuda:<cuda_index>.

    NVML ignores CUDA_VISIBLE_DEVICES and numbers every GPU on the machine, whereas CUDA numbers
    only the listed ones: cuda:i is the i-th entry of the list. (Ray sets the list per worker.)"""
    if visible_devices is None:
        return cuda_index
    entries = [entry.strip() for entry in visible_devices.split(",")]
    entry = entries[cuda_index] if 0 <= cuda_index < len(entries) else ""
    if entry.isdigit():
        return int(entry)
    if entry.startswith(("GPU-", "MIG-")):
        return entry
    raise ValueError(f"cuda:{cuda_index} is not in CUDA_VISIBLE_DEVICES={visible_devices!r}")


def cuda_uuid(cuda_index: int) -> str | None:
    """NVML's UUID ("GPU-…"/"MIG-…") of cuda:<cuda_index> as CUDA itself reports it, or None.

    The surest match: CUDA may order GPUs differently from NVML (fastest first, not by PCI bus),
    so an index, even one taken from CUDA_VISIBLE_DEVICES, can name another board."""
    try:
        uuid = str(torch.cuda.get_device_properties(cuda_index).uuid)
    except (AssertionError, RuntimeError, AttributeError, ValueError):  # no CUDA build, driver or device
        return None
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def describe(err: Exception) -> str:
    # NVML's class names (NVMLError_GpuIsLost) say it all; anything else needs its message too.
    if isinstance(err, pynvml.NVMLError):
        return type(err).__name__
    return f"{type(err).__name__}: {err}"


def nvml_readers(handle) -> dict[str, Callable[[], float]]:
    """One zero-argument reader per reading, looked up on `pynvml` at call time."""
    return {
        "util_pct": lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
        "mem_bytes": lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used,
        "power_mw": lambda: pynvml.nvmlDeviceGetPowerUsage(handle),
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "energy_mj": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle),  # Volta and later
    }


def trapezoid_joules(times_s: list[float], watts: list[float]) -> float:
    return sum((w0 + w1) / 2 * (t1 - t0)
               for t0, t1, w0, w1 in zip(times_s, times_s[1:], watts, watts[1:]))


def window_energy_kj(window: list[dict], before: dict | None) -> float | None:
    """Energy from the sample before the window (if any) to its last sample: the difference of
    NVML's energy counter, or else the integral of power over time."""
    span = ([before] if before else []) + window
    if all("energy_mj" in s for s in span):
        used_mj = span[-1]["energy_mj"] - span[0]["energy_mj"]
        return used_mj / 1e6 if used_mj >= 0 else None  # negative: the driver reset the counter
    if all("power_mw" in s for s in span):
        return trapezoid_joules([s["t"] for s in span], [s["power_mw"] / 1e3 for s in span]) / 1e3
    return None


def summarise(window: list[dict], before: dict | None) -> dict:
    """Per-epoch figures for the samples of one window; empty for an empty window."""
    if not window:
        return {}
    column = {key: [s[key] for s in window if key in s] for key in _READINGS}
    stats = {}
    if column["util_pct"]:
        stats.update(gpu_util_mean=fmean(column["util_pct"]), gpu_util_max=max(column["util_pct"]))
    if column["mem_bytes"]:  # decimal GB; NVML's "used" includes the CUDA context and cached blocks
        stats.update(gpu_mem_mean_gb=fmean(column["mem_bytes"]) / 1e9,
                     gpu_mem_peak_gb=max(column["mem_bytes"]) / 1e9)
    if column["power_mw"]:
        stats["gpu_power_mean_w"] = fmean(column["power_mw"]) / 1e3
    energy = window_energy_kj(window, before)
    if energy is not None:
        stats["energy_kj"] = energy
    if column["sm_clock_mhz"]:
        stats["sm_clock_mean_mhz"] = fmean(column["sm_clock_mhz"])
    return stats


class GpuSampler:
    """Samples one worker's GPU every `interval_s` on a daemon thread; use as a context manager
    or with start()/stop(), and call epoch_stats() once per epoch."""

    def __init__(self, device_index: int | None, interval_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.device_index, self.interval_s, self._clock = device_index, interval_s, clock
        self.device_name: str | None = None
        self.unavailable_reason: str | None = "not started"
        self._readers: dict[str, Callable[[], float]] = {}
        self._window: list[dict] = []
        self._before: dict | None = None  # the last sample of the previous window
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml_initialised = False

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> GpuSampler:
        if self._thread is not None:
            return self
        if self.device_index is None:
            self.unavailable_reason = "no GPU: training on CPU"
            return self
        try:
            self._open()
        except Exception as err:  # no library, no driver, no such device: train without telemetry
            self.unavailable_reason = f"no GPU: {describe(err)}"
            self._shutdown()
            return self
        self.unavailable_reason = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
            self._thread = None
        self._shutdown()

    def sample_once(self) -> bool:
        """Take one reading into the current window. False once sampling has stopped; never raises."""
        if not self.available or self._stop.is_set():
            return False
        try:
            sample = self._read()
        except Exception as err:  # a lost GPU or a driver hiccup must not reach the training loop
            self._fail(f"sampling stopped: {describe(err)}")
            return False
        with self._lock:
            self._window.append(sample)
        return True

    def epoch_stats(self) -> dict:
        """Figures for the samples since the previous call; {} when unavailable or after a
        sampling failure (no figures rather than partial ones)."""
        with self._lock:
            window, self._window = self._window, []
            before = self._before
            if window:
                self._before = window[-1]
        return summarise(window, before) if self.available else {}

    def _open(self) -> None:
        target = (cuda_uuid(self.device_index)
                  or nvml_target(self.device_index, os.environ.get("CUDA_VISIBLE_DEVICES")))
        pynvml.nvmlInit()
        self._nvml_initialised = True
        handle = (pynvml.nvmlDeviceGetHandleByUUID(target) if isinstance(target, str)
                  else pynvml.nvmlDeviceGetHandleByIndex(target))
        name = pynvml.nvmlDeviceGetName(handle)
        self.device_name = name.decode() if isinstance(name, bytes) else name
        # Probe each reading once: boards differ (no power sensor, no utilisation on MIG slices),
        # so keep those that work. The probe doubles as the first energy baseline.
        self._before, self._readers = {"t": self._clock()}, {}
        for key, read in nvml_readers(handle).items():
            try:
                self._before[key] = float(read())
                self._readers[key] = read
            except pynvml.NVMLError:
                pass
        if not self._readers:
            raise RuntimeError(f"NVML reports no metrics for {self.device_name}")

    def _read(self) -> dict:
        sample = {"t": self._clock()}
        for key, read in self._readers.items():
            sample[key] = float(read())
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and self.sample_once():
            pass

    def _fail(self, reason: str) -> None:
        self.unavailable_reason = reason
        log.warning("GPU telemetry for cuda:%s %s", self.device_index, reason)

    def _shutdown(self) -> None:
        if self._nvml_initialised:
            self._nvml_initialised = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass  # a lost GPU can fail shutdown too; the process keeps training regardless


def torch_peak_memory_gb(device: torch.device) -> dict:
    """PyTorch's own peak of allocated tensors since the last call (decimal GB): the model's real
    need, next to NVML's figure that also holds the CUDA context and the allocator's cache."""
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 1e9
    torch.cuda.reset_peak_memory_stats(device)
    return {"torch_mem_peak_gb": peak}
