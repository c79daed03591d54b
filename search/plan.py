"""Before a search starts: how long an epoch takes here, how often trials report, how long it all takes.

A search compares trials at rungs; when one epoch is a large part of a trial's budget (the font
CNN at 90x90 on a CPU), rungs of whole epochs would come too late to compare anything, so trials
report at fractions of an epoch instead (docs/search-design.md). The epoch time is measured by
training the seed's baseline for a few batches, which costs seconds, in a Ray task holding one
trial's CPUs and GPUs: on a node and a device such as the trials get, not the driver's CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError

from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import Space
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import Horizon, evaluate, train
from hpsearch.trainables.tasks import Task, get_task

PROBE_BATCHES = 6  # enough to get past the first, slowest batch; few enough to take seconds
# A report takes at most this share of a trial's budget: 8 reports or more fit, so a scheduler
# with rungs at 1 and 3 reports (grace 1, eta 3) has something to compare inside the budget.
MAX_REPORT_SHARE = 1 / 8
# Every report pays a whole validation pass: reports are never made so fine that it takes more
# than this share of a report (a trial would spend its budget measuring instead of training).
MAX_VAL_SHARE = 1 / 3
REPORTS_PER_EPOCH_CHOICES = (1, 2, 4, 8, 16)
# What every space's `--quick` preset promises (the README's quick start; the walls measured are in
# docs/experiments.md): a search that ends in about 15 minutes on a 2-core CPU. The search warns
# before it starts when this machine will need longer.
QUICK_WALL_S = 15 * 60
# How long the timing task may wait for a node with a trial's resources and run there (a worker's
# start and imports, then seconds of batches); past it the plan goes unmeasured.
MEASURE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class EpochTime:
    train_s: float  # one epoch of training
    val_s: float  # one pass over the validation split, paid at every report

    def report_s(self, reports_per_epoch: int) -> float:
        return self.train_s / reports_per_epoch + self.val_s


@dataclass(frozen=True)
class Plan:
    epoch: EpochTime | None  # the baseline's, measured here; None if not measured
    reports_per_epoch: int
    why: str

    def trial_s(self, settings: SearchSettings) -> float:
        """A whole trial's time at most: its horizon, or its budget if that is shorter."""
        if self.epoch is None:
            return settings.trial_budget_s
        reports = settings.max_epochs * self.reports_per_epoch
        return min(settings.trial_budget_s, reports * self.epoch.report_s(self.reports_per_epoch))


def measure_epoch(space: Space, data: Splits, settings: SearchSettings, device: torch.device) -> EpochTime:
    """One epoch of the baseline on ``data`` (training, and validation apart), from a few batches
    on ``device``, in this process."""
    probe = _probe(data, space.baseline["batch_size"])
    span_s, val_s = _time_probe(space.task, space.baseline, probe, settings, device)
    return _scaled(span_s, val_s, probe, data)


def measure_epoch_where_trials_run(
    space: Space, data: Splits, settings: SearchSettings, timeout_s: float = MEASURE_TIMEOUT_S
) -> tuple[EpochTime, str] | None:
    """``measure_epoch`` in a Ray task that holds one trial's CPUs and GPUs, so on a node and a
    device such as the trials get; and that device, in words. Only the probe's images travel.
    None if no node ran it within ``timeout_s`` (the cluster busy with other work)."""
    probe = _probe(data, space.baseline["batch_size"])
    timer = ray.remote(num_cpus=settings.cpus_per_trial, num_gpus=settings.gpus_per_trial, max_retries=0)(
        _time_on_worker
    )
    pending = timer.remote(space.task.name, space.baseline, probe, settings)
    try:
        span_s, val_s, device = ray.get(pending, timeout=timeout_s)
    except GetTimeoutError:
        ray.cancel(pending, force=True)
        return None
    return _scaled(span_s, val_s, probe, data), device


def _time_on_worker(
    task_name: str, baseline: dict[str, Any], probe: Splits, settings: SearchSettings
) -> tuple[float, float, str]:
    # The device as a trial picks it (search/trainable.py run_trial).
    gpus = ray.get_gpu_ids()
    device = torch.device("cuda" if torch.cuda.is_available() and gpus else "cpu")
    span_s, val_s = _time_probe(get_task(task_name), baseline, probe, settings, device)
    if device.type == "cuda":
        return span_s, val_s, torch.cuda.get_device_name(device)
    if gpus:  # a GPU that Ray gave but torch cannot use: the trials will train on the CPU too
        return span_s, val_s, f"cpu (Ray gave it GPU {', '.join(map(str, gpus))}; torch sees none)"
    return span_s, val_s, "cpu"


def _probe(data: Splits, batch: int) -> Splits:
    """The first few batches of training images and as many validation images."""
    n_train = min(len(data.train), PROBE_BATCHES * batch)
    n_val = min(len(data.val), n_train)
    return Splits(
        Split(data.train.x[:n_train], data.train.y[:n_train]),
        Split(data.val.x[:n_val], data.val.y[:n_val]),
        Split(data.val.x[:0], data.val.y[:0]),
        data.classes,
    )


def _time_probe(
    task: Task, baseline: dict[str, Any], probe: Splits, settings: SearchSettings, device: torch.device
) -> tuple[float, float]:
    """Seconds of the model's set-up, training and a validation pass over ``probe``; and of a
    validation pass alone."""
    probe = probe.to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))  # as a trial will run
    try:
        config = settings.trial_config(task, baseline, {})
        started = time.perf_counter()
        result = train(task, config, probe, device=device, budget_s=1e9, horizon=Horizon(1), started=started)
        span_s = time.perf_counter() - started
        started = time.perf_counter()
        evaluate(result.model, probe.val, task)
        val_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return span_s, val_s


def _scaled(span_s: float, val_s: float, probe: Splits, data: Splits) -> EpochTime:
    # The span held the model's set-up, the training and one validation pass.
    train_s = max(span_s - val_s, 1e-3) * len(data.train) / len(probe.train)
    return EpochTime(train_s, val_s * len(data.val) / len(probe.val))


def plan_reports(epoch: EpochTime, settings: SearchSettings) -> int:
    """The fewest reports per epoch for which one report (its share of the epoch, and a whole
    validation pass) takes at most ``MAX_REPORT_SHARE`` of the trial budget, but none so fine
    that validation would take more than ``MAX_VAL_SHARE`` of a report."""
    limit = MAX_REPORT_SHARE * settings.trial_budget_s
    for k, finer in zip(REPORTS_PER_EPOCH_CHOICES, REPORTS_PER_EPOCH_CHOICES[1:] + (None,), strict=True):
        if epoch.report_s(k) <= limit or finer is None:
            return k
        if epoch.val_s > MAX_VAL_SHARE * epoch.report_s(finer):
            return k  # finer reports would mostly add validation
    raise AssertionError("unreachable: the last choice returns")


def wall_estimate_s(plan: Plan, settings: SearchSettings, slots: int, spent_s: float = 0.0) -> float:
    """The search's wall time at most: what its start already took (data, this plan, Ray), then
    every trial run to its end, ``slots`` at a time."""
    rounds = math.ceil(settings.trials / max(1, slots))
    trials = rounds * plan.trial_s(settings)
    return spent_s + (min(trials, settings.time_budget_s) if settings.time_budget_s else trials)
