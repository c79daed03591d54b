"""Hyperparameter importance from a search's Optuna study (the journal file the searcher keeps).

Only trials that trained to their own end count: the searcher tells Optuna COMPLETE for those
(completed or out of budget), PRUNED for a trial ASHA stopped and FAIL for one that diverged,
failed or was cut short by the search's own stop (search/searcher.py). A pruned trial's value is
a short run's, not its config's, so it would teach the importance model the wrong thing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hpsearch.plumbing import tags as tag

# A forest fitted to fewer points than this explains noise, not the search space.
MIN_COMPLETED_TRIALS = 4
# How the report names the trials left out, by their Optuna state.
LEFT_OUT = {
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "unfinished",
    TrialState.WAITING: "unfinished",
}


@dataclass(frozen=True)
class Importances:
    """Normalised importances (sum 1, largest first), or none and the reason why."""

    values: dict[str, float]
    evaluator: str
    completed_trials: int  # the trials the importances come from: Optuna's COMPLETE ones
    note: str = ""
    left_out: dict[str, int] = field(default_factory=dict)  # "pruned"/"failed"/"unfinished" -> count

    @property
    def basis(self) -> str:
        """Which trials the importances come from, in words, e.g. "6 trials trained to their own
        end (pruned and failed left out: 2 pruned, 1 failed)"."""
        left = ", ".join(f"{n} {why}" for why, n in self.left_out.items() if n)
        return (
            f"{self.completed_trials} trials trained to their own end "
            f"(pruned and failed left out: {left or 'none'})"
        )


def param_importances(study_path: str | None, study_name: str, seed: int = 0) -> Importances:
    """fANOVA importances over the study's COMPLETE trials only; a note instead when there are too few."""
    if not study_path:
        return Importances({}, "", 0, f"no Optuna study recorded for this search (tag {tag.STUDY})")
    path = Path(study_path)
    if not path.is_file():
        # Checked first: JournalFileBackend would create an empty journal at a missing path.
        return Importances({}, "", 0, f"the Optuna study file {path} is missing")
    storage = JournalStorage(JournalFileBackend(str(path)))
    names = optuna.study.get_all_study_names(storage)
    if study_name not in names and len(names) != 1:
        return Importances({}, "", 0, f"no study {study_name!r} in {path} (studies: {', '.join(names)})")
    study = optuna.load_study(study_name=study_name if study_name in names else names[0], storage=storage)
    trials = study.get_trials(deepcopy=False)
    completed = sum(t.state == TrialState.COMPLETE for t in trials)
    left_out: dict[str, int] = {}
    for t in trials:
        if t.state in LEFT_OUT:
            left_out[LEFT_OUT[t.state]] = left_out.get(LEFT_OUT[t.state], 0) + 1
    if completed < MIN_COMPLETED_TRIALS:
        note = (
            f"only {completed} trial(s) trained to their own end (pruned and failed do not count); "
            f"importance needs {MIN_COMPLETED_TRIALS}"
        )
        return Importances({}, "", completed, note, left_out)
    name = "fANOVA" if importlib.util.find_spec("sklearn") else "PED-ANOVA"
    try:
        values = _importances(study, name, seed)
    except (ValueError, RuntimeError) as e:  # e.g. no parameter shared by all completed trials
        return Importances({}, name, completed, f"{name} could not assess this study: {e}", left_out)
    return Importances(values, name, completed, left_out=left_out)


def _importances(study: optuna.Study, evaluator: str, seed: int) -> dict[str, float]:
    # Imported here: optuna.importance imports scikit-learn (~2 s), wasted on a user mistake.
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    # Both evaluators fit only the study's COMPLETE trials, over the parameters all of those share
    # (Optuna's documented behaviour; tests/test_leaderboard.py checks that pruned and failed
    # trials change nothing). fANOVA (the long-standing default, what most readers know) fits
    # scikit-learn's random forest; without scikit-learn, PED-ANOVA (Optuna 5's default) needs none.
    if evaluator == "fANOVA":
        return dict(get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed)))
    return dict(get_param_importances(study, evaluator=PedAnovaImportanceEvaluator()))
