"""What runs inside one Ray Tune trial: resolve the config, train, report every epoch.

It knows nothing of the searcher or the scheduler: it reports once per epoch through
``tune.report`` and ASHA decides whether it goes on.
"""

from __future__ import annotations

from typing import Any

import ray
import torch
from ray import tune

from trainables.config import resolve_config
from trainables.data.splits import Splits
from trainables.loop import train
from trainables.tasks import get_task


def run_trial(
    params: dict[str, Any],
    *,
    data: Splits,
    task_name: str,
    baseline: dict[str, Any],
    budget_s: float,
    max_epochs: int,
    threads: int,
) -> None:
    """Ray Tune function trainable; ``data`` arrives once through the object store."""
    torch.set_num_threads(max(1, threads))
    task = get_task(task_name)
    config = resolve_config(task, baseline, params)
    # A quick search lowers ASHA's max_t below the space's epoch range: a trial ends there.
    config["epochs"] = min(config["epochs"], max_epochs)
    device = torch.device("cuda") if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")
    train(task, config, data.to(device), device=device, budget_s=budget_s, on_epoch=tune.report)
