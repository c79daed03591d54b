"""Optimizer, and a learning-rate schedule measured in epochs of data seen.

The schedule is set before every batch from the fraction of the horizon trained so far, not
stepped once per epoch: a run that reports at quarter epochs (sub-epoch rungs) decays the same
way as one that reports per epoch, and a batch-size change does not change the curve.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def build_optimizer(model: nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), config["lr"], config["weight_decay"]
    name = config["optimizer"]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config["momentum"], nesterov=config["nesterov"], weight_decay=wd
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config["momentum"], weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


class Schedule:
    """The lr as a function of epochs trained, over a horizon that may be shortened once.

    ``step``: times ``gamma`` every ``step_size`` whole epochs (the seeds' StepLR, which does not
    depend on the horizon). ``cosine``: from the base lr to 0 over the horizon. ``none``: flat.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: dict[str, Any], horizon_epochs: float):
        if config["schedule"] not in ("none", "step", "cosine"):
            raise ValueError(f"unknown schedule {config['schedule']!r}")
        self.optimizer, self.config = optimizer, config
        self.horizon_epochs = horizon_epochs
        self.base_lr = config["lr"]

    def factor(self, epochs_done: float) -> float:
        name = self.config["schedule"]
        if name == "step":
            return self.config["gamma"] ** math.floor(epochs_done / self.config["step_size"] + 1e-9)
        if name == "cosine":
            progress = min(1.0, epochs_done / self.horizon_epochs)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def set(self, epochs_done: float) -> float:
        """Set the optimizer's lr for training at ``epochs_done`` epochs; returns it."""
        lr = self.base_lr * self.factor(epochs_done)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr
