"""The search, assembled in one visible function: trainable, searcher, scheduler, stopper."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import ray
from ray import tune

from hpsearch.search.searcher import make_searcher
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import Space
from hpsearch.search.stopping import make_scheduler
from hpsearch.search.storage import search_uri
from hpsearch.search.trainable import run_trial
from hpsearch.trainables.data.splits import Split, Splits


def trainable_for(space: Space, settings: SearchSettings, data: Splits, fn: Callable = run_trial) -> Callable:
    """The trial function with its data in Ray's object store and its resources attached."""
    # Trials never look at test: leave it behind so every node gets only what it needs.
    no_test = Splits(data.train, data.val, Split(data.val.x[:0], data.val.y[:0]), data.classes)
    with_data = tune.with_parameters(
        fn, data=no_test, task_name=space.task.name, baseline=space.baseline, settings=settings
    )
    return tune.with_resources(with_data, {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})


def concurrent_slots(settings: SearchSettings) -> int | None:
    """How many trials fit on the running Ray cluster at once, by their CPU and GPU requests."""
    if not ray.is_initialized():
        return None
    have = ray.cluster_resources()
    requests = (("CPU", settings.cpus_per_trial), ("GPU", settings.gpus_per_trial))
    fits = [int(have.get(key, 0) // need) for key, need in requests if need > 0]
    return max(1, min(fits)) if fits else None


def build_tuner(
    space: Space,
    settings: SearchSettings,
    data: Splits,
    experiment_dir: Path,
    callbacks: Sequence[tune.Callback] = (),
    trial_fn: Callable = run_trial,
) -> tune.Tuner:
    experiment_dir.mkdir(parents=True, exist_ok=True)
    searcher = make_searcher(
        space,
        seed=settings.seed,
        results_dir=experiment_dir,
        n_startup_trials=settings.n_startup_trials,
        budget_s=settings.stopper_budget_s,
    )
    scheduler = make_scheduler(settings)
    tuner = tune.Tuner(
        trainable_for(space, settings, data, trial_fn),
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=settings.trials,
            time_budget_s=settings.time_budget_s,
            # With a searcher Tune keeps one trial pending at a time, so N free slots fill one
            # trial start after another; a limit of N lets N start at once. (It is the cluster's
            # size when the search starts: nodes added later are not used.)
            max_concurrent_trials=concurrent_slots(settings),
            # A worker process runs trial after trial: a fresh one per trial cost 5 s of start-up
            # (benchmarks/overhead.py). search/trainable.py resets what a trial sets.
            reuse_actors=True,
        ),
        run_config=run_config_for(settings, experiment_dir, callbacks),
    )
    tuner.scheduler = scheduler  # the search's own handle, to report the rule it applied
    return tuner


def run_config_for(
    settings: SearchSettings, experiment_dir: Path, callbacks: Sequence[tune.Callback] = ()
) -> tune.RunConfig:
    """Where a search keeps its state, its per-trial stopper, its retries, and its callbacks."""
    if settings.max_failures:
        # Keeping one checkpoint per trial, Tune saves its state after each (so that it never
        # names a deleted one) and warns each time that it does so often: here it is meant to.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return tune.RunConfig(
        name=experiment_dir.name,
        # Tune's state and the trials' checkpoints: <storage>/<name>, by default the results dir.
        storage_path=settings.storage_path or str(experiment_dir.parent.resolve()),
        # Safety net behind the trainable's own budget: Tune stops a trial that reports past it.
        stop={"time_total_s": settings.stopper_budget_s},
        callbacks=list(callbacks),
        # A failed trial starts again from its latest checkpoint (search/trainable.py), which is
        # the only one Tune keeps: the trial's model at its end, before that its loop's state.
        failure_config=tune.FailureConfig(max_failures=settings.max_failures, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_at_end=False, num_to_keep=1 if settings.max_failures else None
        ),
        verbose=0,
    )


def restore_tuner(
    space: Space, settings: SearchSettings, data: Splits, experiment_dir: Path, trial_fn: Callable = run_trial
) -> tune.Tuner:
    """Continue an interrupted search: finished trials stay, unfinished ones run again (from their
    latest checkpoint, with ``max_failures``), found where the search keeps its state."""
    tuner = tune.Tuner.restore(
        search_uri(settings.storage_path, experiment_dir),
        trainable=trainable_for(space, settings, data, trial_fn),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )
    # Tune runs the scheduler it pickled in tuner.pkl when the search began (Tuner.restore takes
    # none): that one, and not a new one built from the settings, is the rule the resumed search
    # applies and reports. Ray keeps it only in the restored tuner's TuneConfig (there is no
    # local one under Ray Client, where the tuner runs on the cluster: no rule is reported then).
    local = getattr(tuner, "_local_tuner", None)
    tuner.scheduler = local._tune_config.scheduler if local is not None else None
    return tuner
