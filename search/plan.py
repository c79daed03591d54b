"""Before a search starts: how long an epoch takes here, how often trials report, how long it all takes.

A search compares trials at rungs; when one epoch is a large part of a trial's budget (the font
CNN at 90x90 on a CPU), rungs of whole epochs would come too late to compare anything, so trials
report at fractions of an epoch instead (docs/search-design.md). The epoch time is measured on
the driver by training the seed's baseline for a few batches, which costs seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import Space
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import Horizon, evaluate, train

PROBE_BATCHES = 6  # enough to get past the first, slowest batch; few enough to take seconds
# A report takes at most this share of a trial's budget: 8 reports or more fit, so a scheduler
# with rungs at 1 and 3 reports (grace 1, eta 3) has something to compare inside the budget.
MAX_REPORT_SHARE = 1 / 8
# Every report pays a whole validation pass: reports are never made so fine that it takes more
# than this share of a report (a trial would spend its budget measuring instead of training).
MAX_VAL_SHARE = 1 / 3
REPORTS_PER_EPOCH_CHOICES = (1, 2, 4, 8, 16)
# What every space's `--quick` preset promises (README): a search that ends in about 15 minutes
# on a 2-core CPU. The search warns before it starts when this machine will need longer.
QUICK_WALL_S = 15 * 60


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
    """One epoch of the baseline on ``data`` (training, and validation apart), from a few batches."""
    batch = space.baseline["batch_size"]
    n_train = min(len(data.train), PROBE_BATCHES * batch)
    n_val = min(len(data.val), n_train)
    probe = Splits(
        Split(data.train.x[:n_train], data.train.y[:n_train]),
        Split(data.val.x[:n_val], data.val.y[:n_val]),
        Split(data.val.x[:0], data.val.y[:0]),
        data.classes,
    ).to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))  # as a trial will run
    try:
        config = settings.trial_config(space.task, space.baseline, {})
        started = time.perf_counter()
        result = train(
            space.task, config, probe, device=device, budget_s=1e9, horizon=Horizon(1), started=started
        )
        span_s = time.perf_counter() - started
        started = time.perf_counter()
        evaluate(result.model, probe.val, space.task)
        val_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    # The span held the model's set-up, the training and one validation pass.
    train_s = max(span_s - val_s, 1e-3) * len(data.train) / n_train
    return EpochTime(train_s, val_s * len(data.val) / n_val)


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
