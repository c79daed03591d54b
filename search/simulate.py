"""A search on a simulated clock: the real searcher and scheduler, a learning-curve oracle, N workers.

A trial's epochs come from an oracle ``(config, epoch) -> metric`` instead of training, and time
is a number the event loop advances, so a strategy that takes hours on a cluster is tested in
seconds. The searcher and scheduler are Ray Tune's own objects, driven through the calls Tune's
controller makes (execution/tune_controller.py); no Ray cluster is started. Plain Optuna
(ask/tell, report, should_prune) runs on the same clock for comparison.

What Ray's objects need, read from their source: ASHA and FIFO look only at ``trial.trial_id``
and never at the controller argument (we pass None); OptunaSearch needs the metric and
``training_iteration`` in each result. Like Tune's controller, a result the scheduler stops is
not passed to the searcher's ``on_trial_result``, and a trial's end calls ``on_trial_complete``
on the scheduler, then the searcher, with its last result. A trial's last epoch carries
``stopped="completed"``, as search/trainable.py reports it.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import optuna
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

Oracle = Callable[[dict[str, Any], int], float]  # (config, epoch 1..max_t) -> metric
EpochTime = Callable[[dict[str, Any], int], float]  # (config, epoch) -> simulated seconds


class Benchmark(Protocol):
    """A learning-curve benchmark: a define-by-run space and an oracle for its curves."""

    metric: str
    mode: str  # "max" or "min"
    max_t: int  # epochs of a full trial

    def suggest(self, trial: optuna.Trial) -> dict[str, Any] | None: ...

    def __call__(self, config: dict[str, Any], epoch: int) -> float: ...


@dataclass(frozen=True)
class Point:
    """One reported epoch: ``t`` is the simulated wall time at the end of the epoch."""

    t: float
    trial: int
    epoch: int
    value: float


@dataclass
class SimTrial:
    """The stand-in for Tune's Trial: what the schedulers read, and what the simulation needs."""

    trial_id: str
    config: dict[str, Any]
    started: float
    epochs: int = 0
    last_result: dict[str, Any] = field(default_factory=dict)
    ended: str = "running"  # running, completed, stopped (by the scheduler or pruner)


@dataclass
class Simulation:
    points: list[Point]  # every report, in the order of the simulated clock
    trials: list[SimTrial]
    workers: int
    wall: float  # the simulated wall time the search had

    def used(self, t: float) -> float:
        """Worker-time spent by wall time ``t`` (all workers busy from the start)."""
        return t * self.workers


class _Policy(Protocol):
    """What the event loop asks of a method: a config for a new trial, and go on or stop."""

    def start(self, trial: SimTrial) -> dict[str, Any] | None: ...

    def report(self, trial: SimTrial, epoch: int, value: float, last: bool) -> bool: ...


def _run(
    policy: _Policy, oracle: Oracle, max_t: int, workers: int, budget: float, epoch_time: EpochTime
) -> Simulation:
    """The event loop. ``budget`` is worker-time (summed over workers), e.g. 100 * max_t epochs."""
    wall = budget / workers
    points: list[Point] = []
    trials: list[SimTrial] = []
    queue: list[tuple[float, int, int]] = []  # (time the trial's next epoch ends, tie-break, trial)
    seq = 0

    def start(now: float) -> None:
        nonlocal seq
        trial = SimTrial(trial_id=f"{len(trials):05d}", config={}, started=now)
        config = policy.start(trial)
        if config is None:  # the searcher has nothing more to propose: this worker idles
            return
        trial.config = config
        trials.append(trial)
        heapq.heappush(queue, (now + epoch_time(config, 1), seq, len(trials) - 1))
        seq += 1

    for _ in range(workers):
        start(0.0)
    while queue:
        now, _, index = heapq.heappop(queue)
        if now > wall:  # the budget ends inside this epoch: it never reports
            break
        trial = trials[index]
        trial.epochs += 1
        value = oracle(trial.config, trial.epochs)
        points.append(Point(now, index, trial.epochs, value))
        last = trial.epochs >= max_t
        if policy.report(trial, trial.epochs, value, last) and not last:
            heapq.heappush(queue, (now + epoch_time(trial.config, trial.epochs + 1), seq, index))
            seq += 1
        else:
            trial.ended = "completed" if last else "stopped"
            start(now)
    return Simulation(points, trials, workers, wall)


class _RayPolicy:
    def __init__(self, searcher: Searcher, scheduler: TrialScheduler, metric: str) -> None:
        self.searcher, self.scheduler, self.metric = searcher, scheduler, metric

    def start(self, trial: SimTrial) -> dict[str, Any] | None:
        config = self.searcher.suggest(trial.trial_id)
        if config is None or config == Searcher.FINISHED:
            return None
        self.scheduler.on_trial_add(None, trial)
        return config

    def report(self, trial: SimTrial, epoch: int, value: float, last: bool) -> bool:
        result = {self.metric: value, "training_iteration": epoch, "time_total_s": float(epoch)}
        if last:
            result["stopped"] = "completed"
        trial.last_result = result
        decision = self.scheduler.on_trial_result(None, trial, result)
        go_on = decision != TrialScheduler.STOP
        if go_on:
            self.searcher.on_trial_result(trial.trial_id, result)
        if not go_on or last:
            self.scheduler.on_trial_complete(None, trial, result)
            self.searcher.on_trial_complete(trial.trial_id, result=result)
        return go_on


class _OptunaPolicy:
    def __init__(self, study: optuna.Study, suggest: Callable[[optuna.Trial], dict[str, Any] | None]) -> None:
        self.study, self.suggest = study, suggest
        self.live: dict[str, optuna.Trial] = {}

    def start(self, trial: SimTrial) -> dict[str, Any] | None:
        ot_trial = self.study.ask()
        self.live[trial.trial_id] = ot_trial
        returned = self.suggest(ot_trial) or {}  # first: it fills ot_trial.params
        return {**ot_trial.params, **returned}

    def report(self, trial: SimTrial, epoch: int, value: float, last: bool) -> bool:
        ot_trial = self.live[trial.trial_id]
        ot_trial.report(value, epoch)
        if last:
            self.study.tell(ot_trial, value)
        elif ot_trial.should_prune():
            self.study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            return False
        return True


def _one_epoch(config: dict[str, Any], epoch: int) -> float:
    return 1.0


def simulate_ray(
    searcher: Searcher,
    scheduler: TrialScheduler,
    oracle: Oracle,
    *,
    metric: str,
    mode: str,
    max_t: int,
    workers: int,
    budget: float,
    seed: int = 0,
    epoch_time: EpochTime = _one_epoch,
) -> Simulation:
    """Run a Ray Tune searcher and scheduler until ``budget`` worker-time units are spent."""
    # ASHA draws its bracket from numpy's global generator; seed it so a run repeats exactly.
    np.random.seed(seed)
    random.seed(seed)
    scheduler.set_search_properties(metric, mode)
    searcher.set_search_properties(metric, mode, {})
    return _run(_RayPolicy(searcher, scheduler, metric), oracle, max_t, workers, budget, epoch_time)


def simulate_optuna(
    study: optuna.Study,
    suggest: Callable[[optuna.Trial], dict[str, Any] | None],
    oracle: Oracle,
    *,
    max_t: int,
    workers: int,
    budget: float,
    epoch_time: EpochTime = _one_epoch,
) -> Simulation:
    """Plain Optuna with N workers on the simulated clock: ask, report each epoch, prune or tell."""
    return _run(_OptunaPolicy(study, suggest), oracle, max_t, workers, budget, epoch_time)


def best_so_far(sim: Simulation, at: list[float], mode: str) -> list[float]:
    """The best value reported by each worker-time in ``at`` (nan before the first report)."""
    best = max if mode == "max" else min
    return [best((p.value for p in sim.points if sim.used(p.t) <= b + 1e-9), default=math.nan) for b in at]
