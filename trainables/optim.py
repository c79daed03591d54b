"""Optimizer and per-epoch learning-rate schedule from a resolved config."""

from __future__ import annotations

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


def build_schedule(
    optimizer: torch.optim.Optimizer, config: dict[str, Any]
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch, as the seeds' StepLR and cosine schedules were."""
    name = config["schedule"]
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config["step_size"], gamma=config["gamma"]
        )
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"])
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"unknown schedule {name!r}")
