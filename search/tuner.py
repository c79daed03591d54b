"""The search, assembled in one visible function: trainable, searcher, scheduler, stopper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import ray
from ray import tune

from hpsearch.search.searcher import make_searcher
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import Space
from hpsearch.search.stopping import make_scheduler
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
    """Where a search keeps its state, its per-trial stopper, and its callbacks."""
    return tune.RunConfig(
        name=experiment_dir.name,
        storage_path=str(experiment_dir.parent.resolve()),
        # Safety net behind the trainable's own budget: Tune stops a trial that reports past it.
        stop={"time_total_s": settings.stopper_budget_s},
        callbacks=list(callbacks),
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        verbose=0,
    )


def restore_tuner(
    space: Space, settings: SearchSettings, data: Splits, experiment_dir: Path, trial_fn: Callable = run_trial
) -> tune.Tuner:
    """Continue an interrupted search: finished trials stay, unfinished ones run again."""
    return tune.Tuner.restore(
        str(experiment_dir.resolve()),
        trainable=trainable_for(space, settings, data, trial_fn),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )
