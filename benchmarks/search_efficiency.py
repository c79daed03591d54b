"""Search efficiency on a real task: our search vs random search vs plain Optuna, same wall budget.

    python benchmarks/search_efficiency.py [--task mnist|font] [--seeds 0 1 2 3 4] [--resume] [--smoke]

Three ways to search the same space (spaces/mnist.py on real MNIST, or spaces/font.py on
generated font images split by font family) with 2 concurrent workers, each given the same wall
budget per seed, on a reduced setting that fits a 2-core CPU (each task's FULL below, which the
options can change; the report gives the command), and what searching is for, the seed's own
baseline trained for that same wall time:

- ours: exactly what search/run.py builds (search.tuner.build_tuner): Ray Tune, seeded
  multivariate TPE, the seed's baseline as trial 0, ASHA over epochs.
- random: Ray Tune with the same trainable, per-trial budget and stopper, random sampling from
  the same define-by-run space, no baseline first, FIFO (no early stopping).
- optuna: plain Optuna, TPE at its defaults with its default MedianPruner, 2 worker processes
  sharing a journal storage, training with the same loop (benchmarks/plain_optuna.py).
- baseline: no search: the seed's hand-tuned config (the space's BASELINE) trained once
  with the same loop, on both CPUs, for the whole wall budget, its schedule over the epochs
  that fit it (as a search's trial fits its budget).

Writes the report, the best-so-far figure (.png) and the raw events (_events.csv) to --out.
Each finished run is also kept in ``<out>_done/`` until the report is written, so ``--resume``
after a crash or a kill runs only what is missing, if the task, setting and code are the same.
``--smoke`` is a tiny run of all four (about a minute) that the tests run so this cannot rot.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from hpsearch.benchmarks.efficiency_report import (
    END,
    EPOCH,
    FAILED,
    START,
    Event,
    tally,
    write_report,
)
from hpsearch.benchmarks.plain_optuna import run_plain_optuna
from hpsearch.benchmarks.resumable import ResumeStore, identity, needs_own_ray
from hpsearch.plumbing.cli import run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.cluster import quiet_libraries
from hpsearch.search.searcher import trial_fate
from hpsearch.search.space import Space, load_space
from hpsearch.search.tuner import SearchSettings, build_tuner, run_config_for, trainable_for
from hpsearch.trainables.data.splits import Split, Splits, per_class_subset
from hpsearch.trainables.loop import Horizon, train

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    train_per_class: int  # MNIST: a seeded subset (seed 0) of its 55,000; font: images generated
    val_per_class: int | None  # MNIST: None is the whole 5,000-image hold-out; font: generated
    max_epochs: int  # caps each trial's epochs, as --max-epochs does
    trial_budget_s: float  # training seconds per trial
    wall_s: float  # per method per seed, from before anything of the method starts
    trials: int  # the Ray searches' cap; it sets our TPE's random start-up (SearchSettings)

    @property
    def startup_trials(self) -> int:
        return SearchSettings(trials=self.trials).n_startup_trials


@dataclass(frozen=True)
class Task:
    space: Path
    full: Setting
    smoke: Setting
    target: float  # val_acc for "time to target": a round number fixed in advance, not fitted
    out: Path
    data: str  # what the report says of the data


# Fixed before any run. Small training sets and trials of several epochs, so that a trial on
# one CPU trains its config near what that config can reach with this data: the searches then
# compare configs, and the baseline, given the whole wall budget on both CPUs, gains little
# from its extra time once it has seen its data a few times (on MNIST at 200 a class it is at
# 0.965 by epoch 17 of 30). A cap of 12 trials gives our TPE 3 random start-up trials
# (SearchSettings), and the wall budget lets ours start at least 3x as many.
TASKS = {
    "mnist": Task(
        space=REPO / "spaces" / "mnist.py",
        full=Setting(
            train_per_class=200, val_per_class=None, max_epochs=8, trial_budget_s=48, wall_s=240, trials=12
        ),
        smoke=Setting(
            train_per_class=20, val_per_class=50, max_epochs=2, trial_budget_s=10, wall_s=20, trials=12
        ),
        target=0.96,
        out=Path("reports/benchmarks/search_efficiency.md"),
        data="real MNIST",
    ),
    "font": Task(
        space=REPO / "spaces" / "font.py",
        full=Setting(
            train_per_class=48, val_per_class=16, max_epochs=6, trial_budget_s=60, wall_s=300, trials=12
        ),
        smoke=Setting(
            train_per_class=4, val_per_class=2, max_epochs=2, trial_budget_s=10, wall_s=25, trials=12
        ),
        target=0.8,
        out=Path("reports/benchmarks/search_efficiency_font.md"),
        data="font characters rendered from matplotlib's and the machine's fonts, split by font family",
    ),
}
WORKERS = 2  # concurrent trials; each gets 1 CPU and 1 torch thread
SEEDS = (0, 1, 2, 3, 4)
SMOKE_DIR = Path("results")

OURS, RANDOM, OPTUNA, BASELINE = "ours", "random", "optuna", "baseline"
LABELS = {
    OURS: "our search (TPE + rank-checked ASHA, baseline first)",
    RANDOM: "random search, no early stopping",
    OPTUNA: "plain Optuna (TPE + MedianPruner)",
    BASELINE: "no search: the seed's baseline trained for the wall budget",
}


class EventLog(tune.Callback):
    """Every trial's start, epochs and end as the driver sees them, in seconds since ``origin``."""

    def __init__(self, origin: float, budget_s: float) -> None:
        self.origin, self.budget_s = origin, budget_s
        self.events: list[Event] = []
        self._numbers: dict[str, int] = {}

    def _add(self, trial, kind: str, **fields) -> None:
        number = self._numbers.setdefault(trial.trial_id, len(self._numbers))
        self.events.append(Event(number, kind, time.time() - self.origin, **fields))

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._add(trial, START)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._add(trial, EPOCH, epoch=int(result["epoch"]), val_acc=float(result["val_acc"]))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        # A trial ASHA stopped reads "pruned"; one cut by the wall budget ends after it, so the
        # report counts it as cut whatever this says.
        self._add(trial, END, fate=trial_fate(trial.last_result, error=False, budget_s=self.budget_s))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._add(trial, END, fate=FAILED)


def build_random_tuner(
    space: Space, settings: SearchSettings, data: Splits, experiment_dir: Path, callbacks: Sequence = ()
) -> tune.Tuner:
    """build_tuner's trainable, per-trial budget and stopper, with random sampling and FIFO."""
    experiment_dir.mkdir(parents=True, exist_ok=True)
    searcher = OptunaSearch(
        space=space.suggest,  # the same define-by-run space; no points_to_evaluate: no baseline
        metric=space.metric,
        mode=space.mode,
        sampler=optuna.samplers.RandomSampler(seed=settings.seed),
    )
    return tune.Tuner(
        trainable_for(space, settings, data),
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            search_alg=searcher,
            scheduler=FIFOScheduler(),  # every trial runs to its own end
            num_samples=settings.trials,
            time_budget_s=settings.time_budget_s,
            reuse_actors=True,  # as build_tuner: the two Ray methods pay the same per-trial cost
        ),
        run_config=run_config_for(settings, experiment_dir, callbacks),
    )


def start_ray() -> None:
    os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "ray"))  # short socket paths
    ray.init(
        address="local",
        num_cpus=WORKERS,  # Ray runs as many 1-CPU trials at once as it has CPUs
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )


def run_ray_search(
    method: str, space: Space, data: Splits, setting: Setting, seed: int, run_dir: Path, own_ray: bool
) -> list[Event]:
    origin = time.time()
    if own_ray:  # Ray's start-up is part of what a user of a Ray search waits for
        start_ray()
    try:
        settings = SearchSettings(
            trials=setting.trials,
            # Tune's own clock starts after its set-up: give it what is left of the wall budget.
            time_budget_s=max(1.0, setting.wall_s - (time.time() - origin)),
            trial_budget_s=setting.trial_budget_s,
            max_epochs=setting.max_epochs,
            cpus_per_trial=1,
            seed=seed,
        )
        log = EventLog(origin, settings.stopper_budget_s)
        build = build_tuner if method == OURS else build_random_tuner
        build(space, settings, data, run_dir, callbacks=[log]).fit()
    finally:
        if own_ray:
            ray.shutdown()
    return log.events


def run_baseline(space: Space, data: Splits, setting: Setting, seed: int) -> list[Event]:
    """The seed's config trained once for the wall budget on every CPU: what a search must beat.

    Its horizon is the space's own (MAX_EPOCHS), shrunk to what the wall budget fits after the
    first epoch, as a search's trial fits its budget; its events are one trial's.
    """
    origin = time.perf_counter()
    events = [Event(0, START, 0.0)]
    torch.set_num_threads(WORKERS)  # the machine the searches share between their workers
    settings = SearchSettings(max_epochs=space.max_epochs, seed=seed)
    config = settings.trial_config(space.task, space.baseline, {})

    def on_epoch(report: dict) -> None:
        t_s = time.perf_counter() - origin
        events.append(Event(0, EPOCH, t_s, epoch=int(report["epoch"]), val_acc=float(report["val_acc"])))

    try:
        result = train(
            space.task,
            config,
            data,
            device=torch.device("cpu"),
            budget_s=setting.wall_s,
            on_epoch=on_epoch,
            horizon=Horizon(space.max_epochs, 1, fit_budget=True),
            started=origin,
        )
    finally:
        torch.set_num_threads(1)
    events.append(Event(0, END, time.perf_counter() - origin, fate=result.stopped))
    return events


def load_data(name: str, space: Space, setting: Setting, data_dir: Path, cache_dir: Path) -> Splits:
    """The task's reduced splits; no method ever looks at test, so none is kept."""
    if name == "font":
        # Rendered from the fonts the project bundles (never downloaded), split by font family.
        counts = {"train": setting.train_per_class, "val": setting.val_per_class, "test": 0}
        data = space.task.load(data_dir, cache_dir=cache_dir, download=False, source="generate", **counts)
        return Splits(data.train, data.val, data.test, data.classes)
    # Never downloads: the official .gz files under data_dir are unpacked into cache_dir, and
    # missing ones are a one-line error naming them.
    data = space.task.load(data_dir, cache_dir=cache_dir, download=False)
    val = data.val if setting.val_per_class is None else per_class_subset(data.val, setting.val_per_class, 0)
    empty = Split(data.test.x[:0], data.test.y[:0])
    return Splits(per_class_subset(data.train, setting.train_per_class, seed=0), val, empty, data.classes)


def data_line(name: str, task: Task, setting: Setting, data: Splits) -> str:
    if name == "font":
        return (
            f"Data: {task.data}; {setting.train_per_class} training and {setting.val_per_class} "
            f"validation images per class ({len(data.train):,} / {len(data.val):,}), rendered with "
            "seed 0; val_acc on the validation families; no test split."
        )
    val = (
        "the whole validation hold-out" if setting.val_per_class is None else f"{setting.val_per_class}/class"
    )
    return (
        f"Data: {task.data}; {setting.train_per_class} training images per class ({len(data.train):,}, "
        f"a subset drawn with seed 0), {val} ({len(data.val):,}) for val_acc; test unused."
    )


def settings_lines(
    name: str, setting: Setting, data: Splits, seeds: Sequence[int], smoke: bool, own_ray: bool
) -> list[str]:
    task = TASKS[name]
    space_file = f"spaces/{task.space.name}"
    clock = (
        f"Ray's start-up is counted for both Ray methods (each starts a local Ray: {WORKERS} CPUs, no GPU)"
        if own_ray
        else "Ray was already running (a test session): its start-up is not counted"
    )
    return [
        *(["**SMOKE RUN: a test of the benchmark, not a measurement.**"] if smoke else []),
        data_line(name, task, setting, data),
        f"Space: `{space_file}` for the three searches; epochs capped at {setting.max_epochs}; "
        f"{setting.trial_budget_s:.0f} s of training per trial at most; training seed 0 in every trial.",
        f"{WORKERS} concurrent workers, 1 CPU and 1 torch thread each, CPU only; "
        f"wall budget {setting.wall_s:.0f} s per method per seed; seeds {', '.join(map(str, seeds))}; "
        "the order of the methods rotates with the seed.",
        f"Target val_acc {task.target:g}, fixed before the runs.",
        f"{LABELS[OURS]}: `search.tuner.build_tuner`, as `search/run.py` builds it (TPE multivariate, "
        f"group, constant liar, seeded; a cap of {setting.trials} trials, so "
        f"{setting.startup_trials} random start-up trials; `search.stopping.make_scheduler`: "
        f"ASHA rungs from grace 1 with reduction factor 3 up to max_t {setting.max_epochs}, each "
        "stopping trials only once it has shown it ranks them), without the MLflow tracker and live view.",
        f"{LABELS[RANDOM]}: Ray Tune, Optuna's RandomSampler (seeded) over the same space, FIFO scheduler, "
        "the same trainable, per-trial budget, stopper and trial cap.",
        f"{LABELS[OPTUNA]}: `optuna.create_study` with `TPESampler(seed=1000 * seed + worker)` at its "
        "defaults (multivariate, constant liar, 10 random start-up trials) and the default pruner "
        f"`MedianPruner()`; {WORKERS} processes sharing a JournalStorage (JournalFileBackend), each "
        "`study.optimize(objective, timeout=...)`; the objective trains with `trainables.loop.train`, "
        "reports val_acc every epoch and returns the last epoch's, as Ray's OptunaSearch does.",
        f"{LABELS[BASELINE]}: `{space_file}`'s BASELINE config, one run of `trainables.loop.train` "
        f"on {WORKERS} torch threads for the whole wall budget, its schedule over the space's "
        "MAX_EPOCHS shrunk to the epochs that budget fits (as a trial fits its own); training seed "
        "as above, so its seeds differ only in the machine's timing.",
        f"Tune: worker processes reused between trials (`reuse_actors=True`, as in `search/run.py`) "
        f"in both Ray methods; TUNE_MAX_PENDING_TRIALS_PG="
        f"{os.environ.get('TUNE_MAX_PENDING_TRIALS_PG', 'unset')} (ours: as many pending trials as the "
        "cluster has slots, `max_concurrent_trials`; random: Tune's default, 1 with a searcher).",
        f"Clock: wall time from before a method starts anything. {clock}; the plain-Optuna processes' "
        "start-up is counted. Only results reported within the wall budget count: Tune's time budget "
        "stops the Ray searches, and plain-Optuna workers still training at the deadline are stopped.",
        "Counts: *finished* trials ran to their own end (all epochs or their own time budget); *pruned* "
        "were stopped by ASHA or the MedianPruner; *cut* were still running at the wall budget.",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="mnist", help="what to search (default mnist)")
    p.add_argument("--seeds", type=int, nargs="+", help="searcher seeds (default 0 1 2 3 4; --smoke: 0)")
    p.add_argument("--wall-budget", type=float, help="seconds per method per seed (default: the task's)")
    p.add_argument("--trial-budget", type=float, help="training seconds per trial (default: the task's)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial at most (default: the task's)")
    p.add_argument("--train-per-class", type=int, help="training images per class (default: the task's)")
    p.add_argument("--trials", type=int, help="the Ray searches' trial cap (default: the task's)")
    p.add_argument("--smoke", action="store_true", help="a tiny run of all four methods (~1 min)")
    p.add_argument(
        "--resume", action="store_true", help="keep the runs a killed run of this command finished"
    )
    p.add_argument(
        "--data-dir", type=Path, default=Path("../shared/data"), help="holds MNIST/raw/ (only read)"
    )
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"), help="where the tensor cache goes")
    p.add_argument(
        "--out", type=Path, help="the report (default: reports/benchmarks/ for the task; --smoke: results/)"
    )
    return p.parse_args(argv)


def chosen_setting(args: argparse.Namespace) -> Setting:
    setting = TASKS[args.task].smoke if args.smoke else TASKS[args.task].full
    given = {
        "wall_s": args.wall_budget,
        "trial_budget_s": args.trial_budget,
        "max_epochs": args.max_epochs,
        "train_per_class": args.train_per_class,
        "trials": args.trials,
    }
    for field_name, value in given.items():
        if value is not None and value <= 0:
            flag = next(a for a, f in OPTIONS.items() if f == field_name)
            raise UsageError(f"{flag} must be positive, got {value:g}")
    return replace(setting, **{k: v for k, v in given.items() if v is not None})


OPTIONS = {
    "--wall-budget": "wall_s",
    "--trial-budget": "trial_budget_s",
    "--max-epochs": "max_epochs",
    "--train-per-class": "train_per_class",
    "--trials": "trials",
}


def run_method(
    method: str, space: Space, data: Splits, setting: Setting, seed: int, run_dir: Path, own_ray: bool
) -> list[Event]:
    if method == BASELINE:
        return run_baseline(space, data, setting, seed)
    if method == OPTUNA:
        return run_plain_optuna(
            space,
            data,
            seed=seed,
            workers=WORKERS,
            wall_s=setting.wall_s,
            trial_budget_s=setting.trial_budget_s,
            max_epochs=setting.max_epochs,
            run_dir=run_dir,
        )
    return run_ray_search(method, space, data, setting, seed, run_dir, own_ray)


def startup_line(runs: dict[tuple[str, int], list[Event]], setting: Setting) -> str:
    started = [tally(ev, setting.wall_s, 0.0).started for (m, _), ev in runs.items() if m == OURS]
    return (
        f"Trials our search started within the wall budget: {min(started)} to {max(started)} per seed "
        f"(mean {sum(started) / len(started):.1f}), against its {setting.startup_trials} random "
        f"start-up trials: at least {min(started) / setting.startup_trials:.1f}x."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    task = TASKS[args.task]
    setting = chosen_setting(args)
    seeds = args.seeds if args.seeds is not None else ((0,) if args.smoke else SEEDS)
    # A smoke run must never overwrite the measured report.
    out = args.out or (SMOKE_DIR / (task.out.stem + "_smoke.md") if args.smoke else task.out)
    command = shlex.join(
        ["python", "benchmarks/search_efficiency.py", *(sys.argv[1:] if argv is None else argv)]
    )
    quiet_libraries()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's plain output, as search/run.py has it
    space = load_space(task.space)
    data = load_data(args.task, space, setting, args.data_dir, args.cache_dir)
    own = needs_own_ray(WORKERS)
    done = ResumeStore(out, identity(args.task, setting, MEASUREMENT_VERSION), args.resume)

    runs: dict[tuple[str, int], list[Event]] = {}
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
        for seed in seeds:
            methods = list(LABELS)
            methods = methods[seed % 4 :] + methods[: seed % 4]  # spread any drift of the machine
            for method in methods:
                key = f"{method}-seed{seed}"
                saved = done.get(key)
                if saved is None:
                    events = run_method(method, space, data, setting, seed, Path(tmp) / key, own)
                    done.add(key, [asdict(e) for e in events])
                    kept = ""
                else:
                    events, kept = [Event(**e) for e in saved], " (kept from the killed run)"
                runs[(method, seed)] = events
                t = tally(events, setting.wall_s, task.target)
                print(
                    f"seed {seed} {method:8s} best val_acc {t.best:.4f}  trials {t.started} "
                    f"(finished {t.finished}, pruned {t.pruned}, cut {t.cut}, failed {t.failed}){kept}",
                    file=sys.stderr,
                    flush=True,
                )
    paths = write_report(
        out,
        title=f"Search efficiency on {args.task}: our search vs random search vs plain Optuna vs no search",
        command=command,
        settings=settings_lines(args.task, setting, data, seeds, args.smoke, own),
        labels=LABELS,
        runs=runs,
        wall_s=setting.wall_s,
        target=task.target,
        notes=[startup_line(runs, setting)],
    )
    done.clear()  # the report's events file holds every run now
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
