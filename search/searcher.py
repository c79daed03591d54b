"""The searcher: Ray Tune's OptunaSearch with a seeded multivariate TPE and a persisted study.

Ray's OptunaSearch tells Optuna that a trial ASHA stopped early is COMPLETE, with its last
(short) result as if it were final. We tell Optuna it was PRUNED, as Optuna's own pruners
would (its intermediate values are already in the study, one per report), a diverged trial
FAIL (as is one the search's own stop cut short), and a finished trial its best report's
value: the number the leaderboard ranks it by and the weights it keeps (trainables/fates.py).

Each Optuna trial names the Tune trial that runs it and, once the tracker has made it, its
MLflow run (user attributes ``tune_trial_id`` and ``mlflow_run_id``): a user looking at the study
(optuna-dashboard on results/<search>/optuna_study.journal) finds the trial's run from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from hpsearch.search.interrupt import search_stopping
from hpsearch.search.space import Space
from hpsearch.trainables.fates import (  # noqa: F401  (re-exported: the search's modules import fates from here)
    BUDGET,
    COMPLETED,
    DIVERGED,
    FAILED,
    PRUNED,
    STOPPED,
    best_value,
    trial_fate,
)

STUDY_FILE = "optuna_study.journal"
TUNE_TRIAL_ATTR = "tune_trial_id"  # an Optuna trial's user attributes: the Tune trial running it,
MLFLOW_RUN_ATTR = "mlflow_run_id"  # and that trial's MLflow run (search/tracking.py)


class PruneAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, budget_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget_s = budget_s
        self._reported: dict[str, list[float]] = {}  # Tune trial id -> its metric, report by report
        self._told_before: set[str] = set()  # Tune trials Optuna already has the end of (restore)

    def suggest(self, trial_id: str) -> dict | None:
        new = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        if new and trial_id in self._ot_trials:  # just asked for: Optuna's trial is RUNNING
            self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._not_ours_to_tell(trial_id):
            return
        self._reported.setdefault(trial_id, []).append(result.get(self.metric))
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._not_ours_to_tell(trial_id):
            return
        fate = trial_fate(result, error, self.budget_s, stopping=search_stopping())
        if trial_id in self._completed_trials or fate == FAILED:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        reported = self._reported.pop(trial_id, []) + [(result or {}).get(self.metric)]
        value = best_value(reported, self.mode)
        # Private state of OptunaSearch: the ask/tell trial handle for this Tune trial.
        ot_trial = self._ot_trials[trial_id]
        if fate == PRUNED:
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        elif fate in (DIVERGED, STOPPED) or value is None:
            # Not a judgement of the config: a trial the search's own stop cut short is no evidence.
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        else:
            self._ot_study.tell(ot_trial, value)
        self._completed_trials.add(trial_id)

    def _not_ours_to_tell(self, trial_id: str) -> bool:
        # After a driver killed outright, Tune's checkpoint and the searcher's can disagree (they
        # are written one after the other): a trial Optuna already has the end of, or one Tune
        # recorded and the searcher's checkpoint did not (its Optuna trial was failed on restore).
        # Tune still runs it; Optuna learns nothing twice, and nothing it cannot place.
        return trial_id in self._told_before or trial_id not in self._ot_trials

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # A trial Optuna handed out just before the driver died, after the searcher's last
        # checkpoint, has no Tune trial to run it: left RUNNING, it would stay so in the journal
        # forever and, with the constant liar, keep TPE away from its point.
        fail_running(self._ot_study, keep={t.number for t in self._ot_trials.values()})
        # A trial that ended, and was told, after the searcher's last checkpoint and before the
        # driver died is RUNNING in Tune's checkpoint: Tune runs it again. Optuna keeps the
        # first end (telling it twice is an error that would fail the rerun).
        ended = {t.number for t in self._ot_study.get_trials(deepcopy=False) if t.state.is_finished()}
        self._told_before = {
            trial_id
            for trial_id, trial in self._ot_trials.items()
            if trial.number in ended and trial_id not in self._completed_trials
        }


def fail_running(study: optuna.Study, keep: set[int] = frozenset()) -> list[int]:
    """Tell Optuna FAIL for each trial still RUNNING but those numbered in ``keep``; their numbers."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    orphans = [t.number for t in running if t.number not in keep]
    for number in orphans:
        study.tell(number, state=TrialState.FAIL)
    return orphans


def close_study(results_dir: Path) -> list[int]:
    """At a search's end, no trial runs: any the journal still calls RUNNING was asked for and
    never run (the search's time budget, a driver killed between ask and start). FAIL them."""
    journal = results_dir / STUDY_FILE
    if not journal.exists():
        return []
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return fail_running(optuna.load_study(study_name=results_dir.name, storage=storage))


class StudyRuns:
    """The search's study as the tracker sees it, to name each Optuna trial's MLflow run."""

    def __init__(self, journal: Path, study_name: str) -> None:
        self.journal, self.study_name = Path(journal), study_name
        self._storage: JournalStorage | None = None

    def note(self, tune_trial_id: str, run_id: str) -> bool:
        """Set ``mlflow_run_id`` on the running Optuna trial of Tune's ``tune_trial_id``; whether
        there was one (a trial already told its end can no longer change: Optuna refuses)."""
        if self._storage is None:
            if not self.journal.is_file():  # a search without a searcher of ours
                return False
            self._storage = JournalStorage(JournalFileBackend(str(self.journal)))
        study_id = self._storage.get_study_id_from_name(self.study_name)
        for trial in self._storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get(TUNE_TRIAL_ATTR) == tune_trial_id:
                self._storage.set_trial_user_attr(trial._trial_id, MLFLOW_RUN_ATTR, run_id)
                return True
        return False


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
