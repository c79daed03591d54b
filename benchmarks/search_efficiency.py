"""Search efficiency on real MNIST: our search vs random search vs plain Optuna, same wall budget.

    python benchmarks/search_efficiency.py [--seeds 0 1 2] [--wall-budget 210] [--smoke]

Three ways to search the same space (spaces/mnist.py) with 2 concurrent workers, each given the
same wall budget per seed, on a reduced setting that fits a 2-core CPU (FULL below), and what
searching is for, the seed's own baseline trained for that same wall time:

- ours: exactly what search/run.py builds (search.tuner.build_tuner): Ray Tune, seeded
  multivariate TPE, the seed's baseline as trial 0, ASHA over epochs.
- random: Ray Tune with the same trainable, per-trial budget and stopper, random sampling from
  the same define-by-run space, no baseline first, FIFO (no early stopping).
- optuna: plain Optuna, TPE at its defaults with its default MedianPruner, 2 worker processes
  sharing a journal storage, training with the same loop (benchmarks/plain_optuna.py).
- baseline: no search: the seed's hand-tuned config (spaces/mnist.py's BASELINE) trained once
  with the same loop, on both CPUs, for the whole wall budget, its schedule over the epochs
  that fit it (as a search's trial fits its budget).

Writes the report, the best-so-far figure (.png) and the raw events (_events.csv) to --out.
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
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from benchmarks.efficiency_report import END, EPOCH, FAILED, START, Event, tally, write_report
from benchmarks.plain_optuna import run_plain_optuna
from plumbing.cli import run_main
from plumbing.errors import UsageError
from search.cluster import quiet_libraries
from search.searcher import trial_fate
from search.space import Space, load_space
from search.tuner import SearchSettings, build_tuner, run_config_for, trainable_for
from trainables.data.splits import Split, Splits, per_class_subset
from trainables.loop import Horizon, train

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "spaces" / "mnist.py"


@dataclass(frozen=True)
class Setting:
    train_per_class: int  # a seeded subset of MNIST's 55,000 training images (seed 0)
    val_per_class: int | None  # None: the whole 5,000-image validation hold-out
    max_epochs: int  # caps each trial's epochs (the space's range is 2..30), as --max-epochs does
    trial_budget_s: float  # training seconds per trial
    wall_s: float  # per method per seed, from before anything of the method starts


# Fixed before any run. FULL is the mnist space's QUICK preset (500 images per class, 3 epochs,
# 120 s per trial); the wall budget makes 3 methods x 3 seeds fit ~35 minutes.
FULL = Setting(train_per_class=500, val_per_class=None, max_epochs=3, trial_budget_s=120, wall_s=210)
SMOKE = Setting(train_per_class=20, val_per_class=50, max_epochs=2, trial_budget_s=10, wall_s=20)
TARGET = 0.97  # val_acc for "time to target": a round number fixed in advance, not fitted to results
WORKERS = 2  # concurrent trials; each gets 1 CPU and 1 torch thread
TRIALS_CAP = 100  # never reached within the wall budget; it also sets our TPE's random start-up to 10
SEEDS = (0, 1, 2)
OUT, SMOKE_OUT = Path("reports/benchmarks/search_efficiency.md"), Path("results/search_efficiency_smoke.md")

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
            trials=TRIALS_CAP,
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


def load_data(space: Space, setting: Setting, data_dir: Path, cache_dir: Path) -> Splits:
    # Never downloads: the official .gz files under data_dir are unpacked into cache_dir, and
    # missing ones are a one-line error naming them.
    data = space.task.load(data_dir, cache_dir=cache_dir, download=False)
    val = data.val if setting.val_per_class is None else per_class_subset(data.val, setting.val_per_class, 0)
    empty = Split(data.test.x[:0], data.test.y[:0])  # no method ever looks at test
    return Splits(per_class_subset(data.train, setting.train_per_class, seed=0), val, empty, data.classes)


def settings_lines(
    setting: Setting, data: Splits, seeds: Sequence[int], smoke: bool, own_ray: bool
) -> list[str]:
    val = (
        "the whole validation hold-out" if setting.val_per_class is None else f"{setting.val_per_class}/class"
    )
    clock = (
        f"Ray's start-up is counted for both Ray methods (each starts a local Ray: {WORKERS} CPUs, no GPU)"
        if own_ray
        else "Ray was already running (a test session): its start-up is not counted"
    )
    return [
        *(["**SMOKE RUN: a test of the benchmark, not a measurement.**"] if smoke else []),
        f"Data: real MNIST; {setting.train_per_class} training images per class ({len(data.train):,}, "
        f"a subset drawn with seed 0), {val} ({len(data.val):,}) for val_acc; test unused.",
        f"Space: `spaces/mnist.py` for the three searches; epochs capped at {setting.max_epochs}; "
        f"{setting.trial_budget_s:.0f} s of training per trial at most; training seed 0 in every trial.",
        f"{WORKERS} concurrent workers, 1 CPU and 1 torch thread each, CPU only; "
        f"wall budget {setting.wall_s:.0f} s per method per seed; seeds {', '.join(map(str, seeds))}; "
        "the order of the methods rotates with the seed.",
        f"Target val_acc {TARGET:g}, fixed before the runs.",
        f"{LABELS[OURS]}: `search.tuner.build_tuner`, as `search/run.py` builds it (TPE multivariate, "
        "group, constant liar, 10 random start-up trials, seeded; `search.stopping.make_scheduler`: "
        f"ASHA rungs from grace 1 with reduction factor 3 up to max_t {setting.max_epochs}, each "
        "stopping trials only once it has shown it ranks them), without the MLflow tracker and live view.",
        f"{LABELS[RANDOM]}: Ray Tune, Optuna's RandomSampler (seeded) over the same space, FIFO scheduler, "
        "the same trainable, per-trial budget and stopper.",
        f"{LABELS[OPTUNA]}: `optuna.create_study` with `TPESampler(seed=1000 * seed + worker)` at its "
        "defaults (multivariate, constant liar, 10 random start-up trials) and the default pruner "
        f"`MedianPruner()`; {WORKERS} processes sharing a JournalStorage (JournalFileBackend), each "
        "`study.optimize(objective, timeout=...)`; the objective trains with `trainables.loop.train`, "
        "reports val_acc every epoch and returns the last epoch's, as Ray's OptunaSearch does.",
        f"{LABELS[BASELINE]}: `spaces/mnist.py`'s BASELINE config, one run of `trainables.loop.train` "
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
    p.add_argument("--seeds", type=int, nargs="+", help="searcher seeds (default 0 1 2; --smoke: 0)")
    p.add_argument("--wall-budget", type=float, help=f"seconds per method per seed (default {FULL.wall_s:g})")
    p.add_argument("--smoke", action="store_true", help="a tiny run of all four methods (~1 min)")
    p.add_argument(
        "--data-dir", type=Path, default=Path("../shared/data"), help="holds MNIST/raw/ (only read)"
    )
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"), help="where the tensor cache goes")
    p.add_argument("--out", type=Path, help=f"the report (default {OUT}; --smoke: {SMOKE_OUT})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setting = SMOKE if args.smoke else FULL
    if args.wall_budget is not None:
        if args.wall_budget <= 0:
            raise UsageError(f"--wall-budget must be positive, got {args.wall_budget}")
        setting = replace(setting, wall_s=args.wall_budget)
    seeds = args.seeds if args.seeds is not None else ((0,) if args.smoke else SEEDS)
    # A smoke run must never overwrite the measured report.
    out = args.out or (SMOKE_OUT if args.smoke else OUT)
    quiet_libraries()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's plain output, as search/run.py has it
    space = load_space(SPACE)
    data = load_data(space, setting, args.data_dir, args.cache_dir)
    own_ray = not ray.is_initialized()
    if not own_ray and ray.cluster_resources().get("CPU") != WORKERS:
        raise UsageError(
            f"the running Ray has {ray.cluster_resources().get('CPU')} CPUs; this needs {WORKERS}"
        )

    runs: dict[tuple[str, int], list[Event]] = {}
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
        work_dir = Path(tmp)
        for seed in seeds:
            methods = list(LABELS)
            methods = methods[seed % 4 :] + methods[: seed % 4]  # spread any drift of the machine
            for method in methods:
                run_dir = work_dir / f"{method}-seed{seed}"
                if method == BASELINE:
                    events = run_baseline(space, data, setting, seed)
                elif method == OPTUNA:
                    events = run_plain_optuna(
                        space,
                        data,
                        seed=seed,
                        workers=WORKERS,
                        wall_s=setting.wall_s,
                        trial_budget_s=setting.trial_budget_s,
                        max_epochs=setting.max_epochs,
                        run_dir=run_dir,
                    )
                else:
                    events = run_ray_search(method, space, data, setting, seed, run_dir, own_ray)
                runs[(method, seed)] = events
                t = tally(events, setting.wall_s, TARGET)
                print(
                    f"seed {seed} {method:7s} best val_acc {t.best:.4f}  trials {t.started} "
                    f"(finished {t.finished}, pruned {t.pruned}, cut {t.cut}, failed {t.failed})",
                    file=sys.stderr,
                    flush=True,
                )
    paths = write_report(
        out,
        title="Search efficiency on MNIST: our search vs random search vs plain Optuna vs no search",
        command=shlex.join(
            ["python", "benchmarks/search_efficiency.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        settings=settings_lines(setting, data, seeds, args.smoke, own_ray),
        labels=LABELS,
        runs=runs,
        wall_s=setting.wall_s,
        target=TARGET,
    )
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
