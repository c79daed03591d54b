"""The searcher: Ray Tune's OptunaSearch with a seeded multivariate TPE and a persisted study.

Ray's OptunaSearch tells Optuna that a trial ASHA stopped early is COMPLETE, with its last
(short) result as if it were final. We tell Optuna it was PRUNED, as Optuna's own pruners
would, so the study, optuna-dashboard and TPE itself see what really happened.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.space import Space

STUDY_FILE = "optuna_study.journal"

# A trial's fate: how it ended. The trainable reports `stopped` on its last epoch.
COMPLETED, PRUNED, BUDGET, DIVERGED, FAILED = "completed", "pruned", "budget", "diverged", "failed"


def trial_fate(last_result: dict[str, Any] | None, error: bool, budget_s: float | None = None) -> str:
    """How a trial ended, from its last report; ``budget_s`` is the per-trial training budget."""
    if error:
        return FAILED
    last = last_result or {}
    if last.get("stopped") in (COMPLETED, BUDGET, DIVERGED):
        return last["stopped"]
    # No `stopped` on the last report: something outside the trial ended it, either the
    # budget stopper (Tune's safety net past the trial budget) or ASHA.
    if budget_s is not None and last.get("time_total_s", 0) >= budget_s:
        return BUDGET
    return PRUNED


class PruneAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, budget_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget_s = budget_s

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        fate = trial_fate(result, error, self.budget_s)
        value = (result or {}).get(self.metric)
        if fate == PRUNED or (fate != FAILED and not _finite(value)):
            # Private state of OptunaSearch: the ask/tell trial handle for this Tune trial.
            ot_trial = self._ot_trials[trial_id]
            state = TrialState.PRUNED if fate == PRUNED else TrialState.FAIL
            self._ot_study.tell(ot_trial, state=state)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(
    space: Space, *, seed: int, results_dir: Path, n_startup_trials: int, budget_s: float | None = None
) -> OptunaSearch:
    """TPE over the space's define-by-run function, starting from the seed's baseline."""
    sampler = optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,  # model the knobs jointly (lr and batch size interact)
        group=True,  # needed with multivariate for conditional (define-by-run) knobs
        constant_liar=True,  # parallel workers don't propose the same point
        n_startup_trials=n_startup_trials,
    )
    storage = JournalStorage(JournalFileBackend(str(results_dir / STUDY_FILE)))
    return PruneAwareOptunaSearch(
        space=space.suggest,
        metric=space.metric,
        mode=space.mode,
        sampler=sampler,
        storage=storage,
        study_name=results_dir.name,
        # The seed's config is trial 0; a space without a baseline starts from TPE's random start.
        points_to_evaluate=[dict(space.baseline)] if space.baseline else None,
        budget_s=budget_s,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
