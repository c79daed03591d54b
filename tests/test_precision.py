"""The arithmetic a run trains in: chosen by what the device can do, and each choice trains.

No GPU here: the choice is checked against a GPU's reported capability, and the fp16 path
(autocast plus a GradScaler) and the bf16 path run on the CPU, where torch has both.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch

from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import train
from hpsearch.trainables.precision import BF16, FP16, FP32, Precision, choose_precision
from hpsearch.trainables.tasks import TASKS

CUDA = torch.device("cuda")  # a device name only: nothing is allocated on it


def test_cpu_trains_in_fp32():
    precision = choose_precision(torch.device("cpu"))
    assert precision == Precision(FP32, "cpu")
    assert isinstance(precision.autocast(), nullcontext) and precision.grad_scaler() is None


@pytest.mark.parametrize(
    ("capability", "expected"), [((9, 0), BF16), ((8, 0), BF16), ((7, 5), FP16), ((7, 0), FP16)]
)
def test_a_gpu_gets_bf16_where_native_else_fp16(monkeypatch, capability, expected):
    # H100/H200 9.0 and A100 8.0 compute in bf16; T4 7.5 and V100 7.0 only emulate it.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert choose_precision(CUDA) == Precision(expected, "cuda")


def test_only_fp16_scales_its_loss():
    assert isinstance(Precision(FP16, "cpu").grad_scaler(), torch.amp.GradScaler)
    assert Precision(BF16, "cpu").grad_scaler() is None
    assert Precision(FP32, "cpu").grad_scaler() is None


@pytest.mark.parametrize("name", [FP32, BF16, FP16])
def test_train_runs_and_reports_in_each_precision(one_torch_thread, name):
    task = TASKS["mnist"]
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(64) % task.num_classes
    x = torch.randint(0, 256, (64, *task.input_shape), dtype=torch.uint8, generator=gen)
    data = Splits(Split(x, y), Split(x[:16], y[:16]), Split(x[:16], y[:16]), [str(k) for k in range(10)])
    config = resolve_config(task, {"epochs": 2, "batch_size": 16, "channels": 8, "fc1": 32, "fc2": 32})
    result = train(task, config, data, device=torch.device("cpu"), precision=Precision(name, "cpu"))
    assert result.precision == name and [r["precision"] for r in result.history] == [name, name]
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert "gpu_peak_mem_gb" not in result.history[0]  # a CUDA-only figure
