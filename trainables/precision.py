"""Which arithmetic a run trains in, chosen from what its device can do.

bf16 autocast where the GPU computes in bf16 natively (Ampere and later): the range of fp32,
no loss scaling. On older CUDA GPUs (T4, V100: the seeds' Colab-class hardware) bf16 is
emulated and slow, so fp16 autocast with a GradScaler, which rescales the loss so that small
fp16 gradients do not flush to zero. fp32 on the CPU, where autocast buys a small model nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

BF16, FP16, FP32 = "bf16", "fp16", "fp32"
_DTYPES = {BF16: torch.bfloat16, FP16: torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str  # BF16, FP16 or FP32: what the run's tags and reports call it
    device_type: str  # "cuda" or "cpu"

    def autocast(self) -> AbstractContextManager:
        if self.name == FP32:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.name])

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 (one per run: it learns its scale as the run trains), else None."""
        return torch.amp.GradScaler(self.device_type) if self.name == FP16 else None


def choose_precision(device: torch.device) -> Precision:
    """bf16 on a GPU that has it, fp16 + loss scaling on one that has not, fp32 on the CPU."""
    if device.type != "cuda":
        return Precision(FP32, device.type)
    # Native bf16 from compute capability 8.0 (Ampere) on: torch.cuda.is_bf16_supported() also
    # says yes where bf16 is only emulated, slowly (T4, V100).
    native = torch.cuda.get_device_capability(device) >= (8, 0)
    return Precision(BF16 if native else FP16, device.type)
