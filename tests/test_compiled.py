"""torch.compile for GPU runs: where it is used, its warm-up leaves no trace, a failure trains eagerly.

A real compilation needs a GPU here (tests/test_cuda.py); on the CPU ``torch.compile`` is
replaced by a wrapper that shares the model's parameters, as a compiled module does.
"""

from __future__ import annotations

import logging

import pytest
import torch
from search_helpers import random_splits
from torch import nn

import hpsearch.trainables.compiled
import hpsearch.trainables.loop
from hpsearch.trainables.compiled import compile_for_training, wants_compile
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.loop import train
from hpsearch.trainables.tasks import TASKS

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


class Wrapped(nn.Module):
    """Stands in for torch.compile's module: another module, running the same parameters."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def test_compile_only_on_a_gpu_and_where_asked_or_measured_to_pay(monkeypatch):
    monkeypatch.setattr(hpsearch.trainables.compiled, "PAYS_ON_CUDA", frozenset({"cifar_bn_cnn"}))
    assert not any(wants_compile(mode, CPU, "cifar_bn_cnn") for mode in ("auto", "on", "off"))
    assert wants_compile("on", CUDA, "mnist_cnn")
    assert not wants_compile("off", CUDA, "cifar_bn_cnn")
    assert wants_compile("auto", CUDA, "cifar_bn_cnn")
    assert not wants_compile("auto", CUDA, "mnist_cnn")
    with pytest.raises(ValueError, match="compile must be one of auto, on, off"):
        wants_compile("always", CUDA, "mnist_cnn")


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["mnist", "cifar100"])  # dropout; batch norm
def test_a_compiled_run_trains_exactly_as_the_eager_one(monkeypatch, one_torch_thread, task_name):
    # The warm-up that compiles takes no optimizer step and restores batch norm's statistics and
    # the random state: the run after it is the eager run, report for report.
    task = TASKS[task_name]
    config = resolve_config(task, {"epochs": 2, "batch_size": 32, "dropout": 0.3})
    data = random_splits(task, 128, 64)
    eager = train(task, config, data, device=CPU)
    wrapped = []
    monkeypatch.setattr(hpsearch.trainables.loop, "wants_compile", lambda mode, device, family: mode == "on")
    monkeypatch.setattr(torch, "compile", lambda model: wrapped.append(Wrapped(model)) or wrapped[-1])
    compiled = train(task, config, data, device=CPU, compile_mode="on")
    assert compiled.compiled and not eager.compiled
    assert compiled.compile_s is not None and compiled.compile_s >= 0
    assert wrapped[0].calls > 2  # the warm-up's two forwards, then every batch and validation
    assert [r["compiled"] for r in compiled.history] == [True, True]
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [[r[k] for k in keys] for r in compiled.history] == [[r[k] for k in keys] for r in eager.history]
    # The model handed back is the model itself (its state_dict's names unprefixed), best weights in.
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())
    for name, tensor in eager.model.state_dict().items():
        assert torch.equal(tensor, compiled.model.state_dict()[name]), name


def test_a_compiler_failure_trains_eagerly_with_one_warning(monkeypatch, caplog):
    def fails(model):
        raise RuntimeError("backend='inductor' raised:\nCalledProcessError: gcc not found")

    monkeypatch.setattr(torch, "compile", fails)
    model = nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING):
        net, seconds = compile_for_training(model, warm_up=lambda net: None)
    assert net is model and seconds is None
    assert "torch.compile failed, this run trains eagerly: backend='inductor' raised:" in caplog.text
    assert "gcc not found" not in caplog.text  # one line, not the compiler's story


def test_a_failure_in_the_warm_up_also_trains_eagerly(monkeypatch):
    monkeypatch.setattr(torch, "compile", Wrapped)

    def warm_up(net):
        raise RuntimeError("lowering failed")

    model = nn.Linear(2, 2)
    net, seconds = compile_for_training(model, warm_up)
    assert net is model and seconds is None
