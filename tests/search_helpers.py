"""Small pieces the search tests share: a tiny space, learnable tiny data, stand-in trials."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import ray
import ray.cloudpickle
import torch
from ray import tune

from hpsearch.trainables.data.splits import Split, Splits

# Ray workers may not have the repo's tests/ on their path: ship these functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY_SPACE = """
TASK = "mnist"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 60
MAX_EPOCHS = 3
BASELINE = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 3, "channels": 4,
            "fc1": 32, "fc2": 16, "dropout": 0.0}


def space(trial):
    trial.suggest_float("lr", 1e-5, 3e-2, log=True)
    trial.suggest_categorical("batch_size", [16, 32, 64])
"""


def write_tiny_space(folder: Path) -> Path:
    path = folder / "tiny.py"
    path.write_text(TINY_SPACE)
    return path


def patterned_split(n: int, seed: int) -> Split:
    """28x28 digits-like data a tiny CNN learns in an epoch: one bright block per class."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.randint(0, 60, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    for cls in range(10):
        r, c = divmod(cls, 4)
        x[y == cls, :, 2 + 6 * r : 8 + 6 * r, 2 + 6 * c : 8 + 6 * c] = 255
    return Split(x, y)


def tiny_data() -> Splits:
    return Splits(
        patterned_split(1000, 0), patterned_split(200, 1), patterned_split(50, 2), [str(i) for i in range(10)]
    )


def random_splits(task, n_train: int, n_val: int, seed: int = 0) -> Splits:
    """Random images of ``task``'s shape and random labels: for what a run does, not what it learns."""
    gen = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        x = torch.randint(0, 256, (n, *task.input_shape), dtype=torch.uint8, generator=gen)
        return Split(x, torch.randint(0, task.num_classes, (n,), generator=gen))

    return Splits(split(n_train), split(n_val), split(n_val), [str(k) for k in range(task.num_classes)])


def placement_trial(params, *, data, task_name, baseline, settings):
    """Reports its GPU ids and how many trials were running at once, without training.

    Each trial marks its start beside the other trials' folders and waits (up to 60 s) until
    eight have started: if fewer can run at once, the first ones time out seeing fewer.
    """
    here = Path(tune.get_context().get_trial_dir())
    (here.parent / f"started-{here.name}").touch()
    deadline = time.time() + 60
    while len(list(here.parent.glob("started-*"))) < 8 and time.time() < deadline:
        time.sleep(0.1)
    tune.report(
        {
            "epoch": 1,
            "val_acc": params["lr"],
            "stopped": "completed",
            "gpu_ids": str(ray.get_gpu_ids()),
            "running_at_once": len(list(here.parent.glob("started-*"))),
            "node": ray.get_runtime_context().get_node_id(),
        }
    )


def slow_trial(params, *, data, task_name, baseline, settings):
    """Never stops on its own: only Tune's budget stopper ends it."""
    for epoch in range(1, 100):
        time.sleep(0.4)
        tune.report({"epoch": epoch, "val_acc": 0.5, "stopped": ""})


def failing_trial(params, *, data, task_name, baseline, settings):
    """Fails for large batches (a user's bug, say), trains nothing otherwise."""
    if params["batch_size"] == 64:
        raise RuntimeError("boom: a trial that crashes")
    tune.report({"epoch": 1, "val_acc": params["lr"], "stopped": "completed"})


def steady_trial(params, *, data, task_name, baseline, settings):
    """A few quick epochs, so a search can be interrupted half way and resumed."""
    for epoch in range(1, settings.max_epochs + 1):
        time.sleep(float(os.environ.get("STEADY_EPOCH_S", "0.5")))
        tune.report(
            {
                "epoch": epoch,
                "val_acc": params["lr"] * epoch,
                "stopped": "completed" if epoch == settings.max_epochs else "",
            }
        )
