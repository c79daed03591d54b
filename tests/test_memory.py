"""A trial's device memory is estimated before it starts; one that cannot fit is not started."""

from __future__ import annotations

import pytest
import torch
from search_helpers import tiny_data, write_tiny_space
from torch import nn

import hpsearch.search.trainable as trainable
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import load_space
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import build_task_model
from hpsearch.trainables.memory import HEADROOM, MemoryEstimate, estimate_memory, fits
from hpsearch.trainables.tasks import get_task

# 2 train images of 1x2x2, 1 val, 1 test: 4 uint8 images of 4 bytes, 4 int64 labels.
DATA = Splits(
    Split(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2, dtype=torch.long)),
    Split(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.long)),
    Split(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.long)),
    ["a", "b", "c"],
)


def linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))  # 15 fp32 parameters: 60 bytes


@pytest.mark.parametrize(
    ("config", "state_tensors"),
    [
        ({"optimizer": "adam"}, 2),  # exp_avg, exp_avg_sq
        ({"optimizer": "sgd", "momentum": 0.9}, 1),  # the momentum buffer
        ({"optimizer": "sgd", "momentum": 0.0}, 0),
        ({"optimizer": "rmsprop", "momentum": 0.0}, 1),  # square_avg only
    ],
)
def test_estimate_counts_data_weights_optimizer_state_and_a_batchs_activations(config, state_tensors):
    need = estimate_memory(linear(), {**config, "batch_size": 32}, DATA)
    assert need.data == 4 * 4 + 4 * 8
    # Weights, gradients, the optimizer's state and the best weights kept for the end.
    assert need.model == 60 * (3 + state_tensors)
    # Per image: the input (4 floats), Flatten's output (4) and Linear's (3), fp32; forward and
    # backward, for 32 images.
    assert need.activations == 2 * 32 * (4 + 4 + 3) * 4
    assert need.total == need.data + need.model + need.activations


def test_estimate_follows_the_batch_size_and_the_model_width():
    task = get_task("mnist")
    data = tiny_data()
    base = {**task_config(task), "batch_size": 64}
    small = estimate_memory(build_task_model(task, base), base, data)
    double_batch = estimate_memory(build_task_model(task, base), {**base, "batch_size": 128}, data)
    assert double_batch.activations == 2 * small.activations
    assert double_batch.model == small.model and double_batch.data == small.data
    # The seed's 3-conv CNN: about 0.1M parameters, Adam -> 5 fp32 copies of each.
    n_params = sum(p.numel() for p in build_task_model(task, base).parameters())
    assert small.model == 5 * 4 * n_params


def test_fits_leaves_headroom():
    need = MemoryEstimate(data=100, model=100, activations=800)
    assert fits(need, int(1000 * HEADROOM))
    assert not fits(need, 1000)  # exactly the estimate: no room for the allocator's slack


def test_a_gpu_trial_that_cannot_fit_is_not_started(monkeypatch, tmp_path):
    # As inside a Ray GPU worker on a GPU with 1 MiB free: refused before its data is copied.
    monkeypatch.setattr(trainable.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(trainable.ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(trainable.torch.cuda, "get_device_name", lambda device: "Fake GPU 80GB")
    monkeypatch.setattr(trainable.torch.cuda, "mem_get_info", lambda device: (2**20, 80 * 2**30))

    def no_copy(*args, **kwargs):
        raise AssertionError("the data was copied to the GPU")

    monkeypatch.setattr(Splits, "to", no_copy)
    monkeypatch.setattr(trainable, "train", no_copy)
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=1, gpus_per_trial=1)
    with pytest.raises(trainable.TrialOutOfMemory) as failed:
        trainable.run_trial(
            {"batch_size": 256},
            data=tiny_data(),
            task_name="mnist",
            baseline=space.baseline,
            settings=settings,
        )
    message = str(failed.value)
    assert message.startswith("out of memory on Fake GPU 80GB: not started, it would need ~"), message
    assert "1.0 MiB of the GPU's 80.00 GiB is free" in message
    assert message.endswith("try a smaller batch_size than 256, or fewer trials per GPU")


def test_trial_reports_its_estimate(monkeypatch, tmp_path):
    reports = []
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=1, trial_budget_s=60, cpus_per_trial=1)
    data = tiny_data()
    trainable.run_trial(
        {"batch_size": 32}, data=data, task_name="mnist", baseline=space.baseline, settings=settings
    )
    config = settings.trial_config(get_task("mnist"), space.baseline, {"batch_size": 32})
    need = estimate_memory(build_task_model(get_task("mnist"), config), config, data)
    assert reports and all(r["mem_estimate_gb"] == round(need.total / 2**30, 4) for r in reports)


def task_config(task):
    from hpsearch.trainables.config import resolve_config

    return resolve_config(task, {})
