"""Hyperparameter importance from a search's Optuna study (the journal file the searcher keeps)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

# A forest fitted to fewer points than this explains noise, not the search space.
MIN_COMPLETED_TRIALS = 4


@dataclass(frozen=True)
class Importances:
    """Normalised importances (sum 1, largest first), or none and the reason why."""

    values: dict[str, float]
    evaluator: str
    completed_trials: int
    note: str = ""


def param_importances(study_path: str | None, study_name: str, seed: int = 0) -> Importances:
    """fANOVA importances of the study's completed trials; a note instead when there are too few."""
    if not study_path:
        return Importances({}, "", 0, "no Optuna study recorded for this search (tag hpsearch.study)")
    path = Path(study_path)
    if not path.is_file():
        # Checked first: JournalFileBackend would create an empty journal at a missing path.
        return Importances({}, "", 0, f"the Optuna study file {path} is missing")
    storage = JournalStorage(JournalFileBackend(str(path)))
    names = optuna.study.get_all_study_names(storage)
    if study_name not in names and len(names) != 1:
        return Importances({}, "", 0, f"no study {study_name!r} in {path} (studies: {', '.join(names)})")
    study = optuna.load_study(study_name=study_name if study_name in names else names[0], storage=storage)
    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if completed < MIN_COMPLETED_TRIALS:
        note = f"only {completed} completed trial(s) in the study; importance needs {MIN_COMPLETED_TRIALS}"
        return Importances({}, "", completed, note)
    name = "fANOVA" if importlib.util.find_spec("sklearn") else "PED-ANOVA"
    try:
        values = _importances(study, name, seed)
    except (ValueError, RuntimeError) as e:  # e.g. no parameter shared by all completed trials
        return Importances({}, name, completed, f"{name} could not assess this study: {e}")
    return Importances(values, name, completed)


def _importances(study: optuna.Study, evaluator: str, seed: int) -> dict[str, float]:
    # Imported here: optuna.importance imports scikit-learn (~2 s), wasted on a user mistake.
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    # fANOVA (the long-standing default, what most readers know) fits scikit-learn's random
    # forest; without scikit-learn, PED-ANOVA (Optuna 5's default) needs none.
    if evaluator == "fANOVA":
        return dict(get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed)))
    return dict(get_param_importances(study, evaluator=PedAnovaImportanceEvaluator()))
