"""What runs inside one Ray Tune trial: resolve the config, train, report every rung.

It knows nothing of the searcher or the scheduler: it reports through ``tune.report`` once per
epoch (or ``reports_per_epoch`` times) and ASHA decides whether it goes on. Its learning-rate
schedule runs over the search's horizon, not a searched epoch count, so that a trial ASHA stops
at a rung is the prefix of the same trial continued (docs/search-design.md).

With ``reuse_actors`` a worker process runs many trials one after another: everything a trial
sets (torch threads, seeds, CUDA memory) is set at its start or released at its end.
"""

from __future__ import annotations

import time
from typing import Any

import ray
import torch
from ray import tune

from search.settings import SearchSettings
from trainables.data.splits import Splits
from trainables.loop import Horizon, train
from trainables.tasks import get_task


def run_trial(
    params: dict[str, Any],
    *,
    data: Splits,
    task_name: str,
    baseline: dict[str, Any],
    settings: SearchSettings,
) -> None:
    """Ray Tune function trainable; ``data`` arrives once through the object store."""
    started = time.perf_counter()  # the trial's budget counts its own set-up too
    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))
    task = get_task(task_name)
    config = settings.trial_config(task, baseline, params)
    # (In that order: outside a Ray worker, get_gpu_ids would start a Ray instance of its own.)
    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    horizon = Horizon(settings.max_epochs, settings.reports_per_epoch, fit_budget=True)
    try:
        train(
            task,
            config,
            data.to(device),
            device=device,
            budget_s=settings.trial_budget_s,
            on_epoch=tune.report,
            horizon=horizon,
            started=started,
        )
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next trial in this reused worker starts with the memory free
