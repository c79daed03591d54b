"""The one training loop every task and model family shares.

Data arrives as uint8 tensors already on the device; each epoch shuffles with ``randperm``,
slices batches, augments and normalises them on the device. Every epoch ends with one
report (``on_epoch``); the run stops on its own when its epochs are done, when the next
epoch would not fit the time budget (the 10-minute rule), or when the loss diverges.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainables.augment import augment
from trainables.data.splits import Split, Splits
from trainables.models import build_model, count_params
from trainables.optim import build_optimizer, build_schedule
from trainables.tasks import Task, normalise

# Why a run ended; the search and the tracker read these names.
COMPLETED, BUDGET, DIVERGED = "completed", "budget", "diverged"
EVAL_BATCH = 1024


@dataclass
class TrainResult:
    model: nn.Module  # holding the best epoch's weights
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    stopped: str = COMPLETED
    train_time_s: float = 0.0
    n_params: int = 0


def pick_device(gpus: float) -> torch.device:
    return torch.device("cuda") if gpus > 0 and torch.cuda.is_available() else torch.device("cpu")


def train(
    task: Task,
    config: dict[str, Any],
    data: Splits,
    *,
    device: torch.device,
    budget_s: float = 600.0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    keep_best: bool = True,
) -> TrainResult:
    """Train ``task``'s model under ``config`` on ``data`` (already on ``device``).

    The returned model holds the best validation epoch's weights, or with ``keep_best`` False
    the last epoch's (when validation data was trained on, its accuracy picks nothing).
    """
    torch.manual_seed(config["seed"])
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    model_knobs = {k: config[k] for k in _model_keys(task, config)}
    model = build_model(task.model, task.num_classes, task.input_shape, **model_knobs).to(device)
    cuda = device.type == "cuda"
    # channels_last helps convolutions on tensor cores; the LSTM reads rows and gains nothing.
    memory_format = torch.channels_last if cuda and task.model != "row_lstm" else torch.preserve_format
    model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, config)
    schedule = build_schedule(optimizer, config)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    result = TrainResult(model=model, n_params=count_params(model))
    best_state = copy.deepcopy(model.state_dict())

    start = time.perf_counter()
    slowest_epoch = 0.0
    for epoch in range(1, config["epochs"] + 1):
        epoch_start = time.perf_counter()
        model.train()
        train_loss, train_acc, out_of_time = _train_epoch(
            model,
            data.train,
            task,
            config,
            optimizer,
            autocast,
            memory_format,
            gen,
            deadline=start + budget_s,
        )
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        val_loss, val_acc = evaluate(model, data.val, task, autocast, memory_format)
        now = time.perf_counter()
        epoch_time = now - epoch_start
        slowest_epoch = max(slowest_epoch, epoch_time)
        # A diverged epoch's weights are NaN: never keep them as the best, even at epoch 1.
        if math.isfinite(train_loss) and (val_acc > result.best_val_acc or not result.best_epoch):
            result.best_epoch, result.best_val_acc = epoch, val_acc
            best_state = copy.deepcopy(model.state_dict())

        if not math.isfinite(train_loss):
            result.stopped = DIVERGED
        elif out_of_time or now - start + slowest_epoch > budget_s:
            # Predict from the slowest epoch so far, so a run never starts an epoch it can't finish.
            # A last epoch cut short by the deadline did not complete either.
            result.stopped = BUDGET if out_of_time or epoch < config["epochs"] else COMPLETED
        elif epoch == config["epochs"]:
            result.stopped = COMPLETED
        else:
            result.stopped = ""
        report = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "epoch_time_s": epoch_time,
            "time_total_s": now - start,
            "stopped": result.stopped,  # empty while the run goes on
        }
        result.history.append(report)
        if on_epoch is not None:
            on_epoch(report)
        if result.stopped:
            break

    result.train_time_s = time.perf_counter() - start
    if keep_best:
        model.load_state_dict(best_state)
    return result


def _train_epoch(
    model: nn.Module,
    split: Split,
    task: Task,
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    autocast: Any,
    memory_format: torch.memory_format,
    gen: torch.Generator,
    deadline: float,
) -> tuple[float, float, bool]:
    n, batch_size = len(split), config["batch_size"]
    order = torch.randperm(n, device=split.x.device, generator=gen)
    # Sums stay on the device: one host sync per epoch, not per batch.
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    seen = 0
    out_of_time = False
    for begin in range(0, n, batch_size):
        idx = order[begin : begin + batch_size]
        if len(idx) < 2 and seen:  # a batch of one breaks BatchNorm; drop the straggler
            break
        x = augment(split.x[idx].float().div_(255), config["augment"], gen)
        x = normalise(x, task).contiguous(memory_format=memory_format)
        y = split.y[idx]
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y).sum()
        seen += len(idx)
        if time.perf_counter() > deadline:
            out_of_time = True  # the first epoch alone may not fit: stop mid-epoch, not late
            break
    return (loss_sum / seen).item(), correct.item() / seen, out_of_time


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    split: Split,
    task: Task,
    autocast: Any = None,
    memory_format: Any = torch.preserve_format,
) -> torch.Tensor:
    """Softmax outputs for every image of ``split`` (float32, on the split's device)."""
    model.eval()
    autocast = autocast or nullcontext()
    out = []
    for begin in range(0, len(split), EVAL_BATCH):
        x = normalise(split.x[begin : begin + EVAL_BATCH].float().div_(255), task)
        with autocast:
            out.append(model(x.contiguous(memory_format=memory_format)).float().softmax(1))
    return torch.cat(out)


def evaluate(
    model: nn.Module,
    split: Split,
    task: Task,
    autocast: Any = None,
    memory_format: Any = torch.preserve_format,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``."""
    probs = predict_proba(model, split, task, autocast, memory_format)
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), split.y).item()
    return loss, (probs.argmax(1) == split.y).float().mean().item()


def _model_keys(task: Task, config: dict[str, Any]) -> list[str]:
    from trainables.models import MODELS

    return [k for k in MODELS[task.model].defaults if k in config]
