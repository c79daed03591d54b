"""A search's settings in one Ray-free dataclass, shared by the search, its tracker and the simulator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchSettings:
    trials: int = 20
    time_budget_s: float | None = None  # the whole search
    trial_budget_s: float = 600.0  # one trial's training: the 10-minute rule
    max_epochs: int = 30  # ASHA's max_t
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    grace_period: int = 1
    reduction_factor: float = 3.0
    seed: int = 0

    @property
    def stopper_budget_s(self) -> float:
        # Tune's clock includes a trial's start-up; leave the trainable's own budget room first.
        return self.trial_budget_s * 1.1

    @property
    def n_startup_trials(self) -> int:
        # TPE's random start: long enough to see the space, short enough to leave room for TPE.
        return max(3, min(10, self.trials // 4))
