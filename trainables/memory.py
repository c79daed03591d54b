"""A trial's device memory, estimated before it starts, and whether that fits what is free.

What a trial holds on its device, and what the estimate counts:

- its own copy of the data (uint8 images, int64 labels): trials packed on one GPU
  (``--gpus-per-trial 0.25``) each hold one, since Ray's worker processes share no CUDA memory;
- the model's weights, their gradients, the optimizer's state (Adam's two moments, SGD's momentum)
  and the copy of the best report's weights the loop keeps to restore at the end;
- what one batch keeps for its backward pass: every layer's output, measured by a forward pass of
  one image on the CPU and scaled to the batch size, in fp32 (autocast halves much of it, so on a
  GPU this errs on the safe side), twice over for the gradients flowing back through them.

It is an estimate, not a bound: the CUDA caching allocator's fragmentation, cuDNN's workspaces
and the CUDA context itself (a few hundred MiB per process) come on top, hence ``HEADROOM``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpsearch.trainables.data.splits import Splits

# Tensors of state per parameter tensor, by optimizer (torch.optim's own buffers).
OPTIMIZER_STATE = {"adam": 2, "adamw": 2, "sgd": 1, "rmsprop": 2}
HEADROOM = 1.2  # the allocator's slack and cuDNN's workspaces over the tensors counted


@dataclass(frozen=True)
class MemoryEstimate:
    data: int  # bytes of the trial's data copy
    model: int  # weights, gradients, optimizer state and the kept best weights
    activations: int  # one training batch's, forward and backward

    @property
    def total(self) -> int:
        return self.data + self.model + self.activations

    def describe(self) -> str:
        return (
            f"~{size(self.total)} (data {size(self.data)}, model and optimizer {size(self.model)}, "
            f"a batch's activations {size(self.activations)})"
        )


def estimate_memory(model: nn.Module, config: dict[str, Any], data: Splits) -> MemoryEstimate:
    """What a trial of ``model`` (built, on the CPU) under ``config`` will need on its device."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    state = OPTIMIZER_STATE.get(config["optimizer"], 2)
    if config["optimizer"] in ("sgd", "rmsprop") and not config.get("momentum"):
        state -= 1  # no momentum buffer
    model_bytes = weights * (1 + 1 + state + 1)  # weights, gradients, state, the kept best
    one_image = data.train.x[:1] if len(data.train) else data.val.x[:1]
    per_image = _output_bytes(model, one_image.float())
    return MemoryEstimate(data_bytes(data), model_bytes, 2 * per_image * int(config["batch_size"]))


def data_bytes(data: Splits) -> int:
    """What a trial's copy of the data takes on its device (uint8 images, int64 labels)."""
    splits = (data.train, data.val, data.test)
    return sum(t.element_size() * t.nelement() for split in splits for t in (split.x, split.y))


def fits(estimate: MemoryEstimate, free_bytes: int) -> bool:
    return estimate.total * HEADROOM <= free_bytes


def size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def _output_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every leaf module's output for the input ``x`` (one image), the input included."""
    total = [x.numel() * 4]

    def count(module: nn.Module, args: Any, output: Any) -> None:
        for t in output if isinstance(output, tuple | list) else (output,):
            if isinstance(t, torch.Tensor):
                total.append(t.numel() * 4)  # fp32

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.eval()  # batch norm takes one image in eval mode; the sizes are the same
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return sum(total)
