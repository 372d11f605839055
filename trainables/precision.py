"""Which autocast dtype a device gets: bf16 where the hardware computes in it natively."""
from __future__ import annotations

from typing import Optional

import torch


def native_bf16(device: torch.device) -> bool:
    """CUDA GPUs with bf16 (Ampere and later), and CPUs whose oneDNN has bf16 kernels (AVX512-BF16,
    AMX). Elsewhere autocast would emulate bf16 and run slower than fp32, so it stays off."""
    if device.type == "cuda":
        # is_bf16_supported() alone is True on V100/T4 too, through emulation; native needs sm_80+.
        return (torch.cuda.get_device_capability(device) >= (8, 0)
                and torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        try:
            return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch build without that probe
            return False
    return False


def autocast_dtype(bf16: bool, device: torch.device) -> Optional[torch.dtype]:
    """torch.bfloat16 when asked for and native on `device`, else None (full fp32)."""
    return torch.bfloat16 if bf16 and native_bf16(device) else None
