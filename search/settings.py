"""A search's settings in one Ray-free dataclass, shared by the search, its tracker and the simulator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SearchSettings:
    trials: int = 20
    time_budget_s: float | None = None  # the whole search
    trial_budget_s: float = 600.0  # one trial's training: the 10-minute rule
    max_epochs: int = 30  # every trial's horizon, in epochs (shortened to what its budget fits)
    reports_per_epoch: int = 1  # > 1: rungs finer than an epoch, when an epoch is long
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    grace_period: int = 1  # in reports
    reduction_factor: float = 3.0
    scheduler: str = "rank-asha"  # which rule stops trials early (search/stopping.py SCHEDULERS)
    seed: int = 0
    compile: str = "auto"  # torch.compile for GPU trials: auto, on, off (trainables/compiled.py)
    # Where Tune keeps the search's state and trials' checkpoints: a URI (s3://, gs://, file://)
    # or a path every node sees; None is the local results dir (search/storage.py).
    storage_path: str | None = None
    max_failures: int = 0  # retries of a failed trial, each from its latest report's checkpoint
    # The space's metric and mode: what a trial's kept weights are the best report by, and what
    # ranks the kept models (search/run.py sets them from the space).
    metric: str = "val_acc"
    mode: str = "max"

    @property
    def stopper_budget_s(self) -> float:
        # Tune's clock includes a trial's start-up; leave the trainable's own budget room first.
        return self.trial_budget_s * 1.1

    @property
    def n_startup_trials(self) -> int:
        # TPE's random start: long enough to see the space, short enough to leave room for TPE.
        return max(3, min(10, self.trials // 4))

    @property
    def max_t(self) -> int:
        """ASHA's max_t: the reports in a whole horizon (Tune counts them as training iterations)."""
        return self.max_epochs * self.reports_per_epoch

    def trial_config(self, task: Any, baseline: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """A trial's config as it trains in this search: the baseline, the searcher's values on top,
        and the search's horizon as its epochs (never a searched knob: docs/search-design.md)."""
        from hpsearch.trainables.config import resolve_config  # torch-heavy: only where a config is built

        config = resolve_config(task, baseline, params)
        config["epochs"] = self.max_epochs
        return config
