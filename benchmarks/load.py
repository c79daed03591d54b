"""Load: many short trials at once on the default SQLite store, then MLflow counted.

    python benchmarks/load.py [--trials 200] [--concurrent 8] [--epochs 5]
    python benchmarks/load.py --smoke        # 16 trials, 4 at a time, 2 epochs: a test of the benchmark

A load test of the search's bookkeeping, not a measure of training. No-op trials
(benchmarks/overhead.py's: each reports its epochs at once and trains nothing, here on 4 synthetic
images) go through the product's own search, `search.tuner.build_tuner` on the mnist space, with the
MLflow tracker (`search.tracking.MlflowTracker`) writing to a new SQLite store, as a search writes to
MLflow's default `sqlite:///mlflow.db` (here in a temporary directory, never the working directory).
Each trial asks for 1/N of Ray's CPUs so that N run at once (the no-op uses none of them), and the
grace period is the whole horizon, so the scheduler stops no trial and every trial logs every epoch.

Then MLflow itself is counted (`MlflowClient.search_runs`, `get_metric_history`): the search's trial
runs, those with every epoch of every metric the tracker logs, those left RUNNING, and the status of
the search's own run. A wrong count exits 1 after the report is written: the benchmark is also a check.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.cloudpickle
import torch
from mlflow import MlflowClient
from mlflow.entities import Run

from hpsearch.benchmarks.epoch_time import synthetic
from hpsearch.benchmarks.machine import write_markdown
from hpsearch.benchmarks.overhead import EXPERIMENT, SPACE, TrialClock, new_store, noop_trial, tracker_for
from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.cluster import quiet_libraries, start_ray
from hpsearch.search.space import load_space
from hpsearch.search.tracking import METRICS
from hpsearch.search.tuner import SearchSettings, build_tuner
from hpsearch.trainables.data.splits import Splits
from hpsearch.trainables.fates import COMPLETED

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

if __name__ != "__main__":
    # Ray workers may not import this file by name (a checkout not installed): ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

OUT, SMOKE_OUT = Path("reports/benchmarks/load.md"), Path("results/load_smoke.md")
DEFAULTS = {"trials": 200, "concurrent": 8, "epochs": 5}
SMOKE = {"trials": 16, "concurrent": 4, "epochs": 2}
SEARCH = "load"  # the search's name (its folder, and its runs' hpsearch.search tag)


def cpus_per_trial(cpus: float, concurrent: int) -> float:
    """A 1/``concurrent`` share of ``cpus``, rounded down so that ``concurrent`` trials fit: Ray
    takes whole CPUs above one and 1/10,000ths below."""
    share = cpus / concurrent
    return float(math.floor(share)) if share >= 1 else math.floor(share * 10_000) / 10_000


@dataclass(frozen=True)
class Load:
    cpus: float  # Ray's CPUs
    cpus_per_trial: float
    wall_s: float  # build_tuner + fit
    ran: int  # trials Tune ran
    errors: int  # of which failed
    most_at_once: int


def run_search(args: argparse.Namespace, root: Path, uri: str) -> Load:
    space = load_space(SPACE)
    some = synthetic(space.task, 4, torch.device("cpu"))
    data = Splits(some.train, some.train, some.train, some.classes)  # the trials train nothing
    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    per_trial = cpus_per_trial(cpus, args.concurrent)
    if per_trial <= 0:
        raise UsageError(f"--concurrent {args.concurrent} is more trials than Ray's {cpus:g} CPUs can hold")
    settings = SearchSettings(
        trials=args.trials,
        max_epochs=args.epochs,
        grace_period=args.epochs,  # ASHA stops nothing: every trial logs every epoch
        cpus_per_trial=per_trial,
        trial_budget_s=600,
    )
    experiment_dir = root / "results" / SEARCH
    clock = TrialClock()
    tracker = tracker_for(space, settings, experiment_dir, uri)
    started = time.monotonic()
    results = build_tuner(space, settings, data, experiment_dir, [clock, tracker], trial_fn=noop_trial).fit()
    wall = time.monotonic() - started
    tracker.finish({}, [])  # the search's run ends as search/run.py ends it
    return Load(cpus, per_trial, wall, len(results), results.num_errors, clock.most_at_once())


@dataclass(frozen=True)
class Counted:
    searches: list[Run]  # the search's own run (one)
    trials: list[Run]  # its trial runs
    complete: int  # trial runs with every epoch of every metric
    seconds: float  # to count them

    @property
    def search_status(self) -> str:
        return self.searches[0].info.status if len(self.searches) == 1 else f"{len(self.searches)} runs"

    def status(self, status: str) -> int:
        return sum(run.info.status == status for run in self.trials)

    def fates(self) -> Counter:
        return Counter(run.data.tags.get(tag.FATE, "none") for run in self.trials)


def all_runs(client: MlflowClient, experiment_id: str, query: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def count_runs(uri: str, epochs: int) -> Counted:
    """The search's runs as MLflow holds them, each trial's metric histories read back."""
    started = time.monotonic()
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    search = f"tags.`{tag.SEARCH}` = '{SEARCH}'"
    searches = all_runs(client, experiment_id, f"{search} AND tags.`{tag.ROLE}` = 'search'")
    trials = all_runs(client, experiment_id, f"{search} AND tags.`{tag.ROLE}` = 'trial'")
    complete = sum(has_every_epoch(client, run.info.run_id, epochs) for run in trials)
    return Counted(searches, trials, complete, time.monotonic() - started)


def has_every_epoch(client: MlflowClient, run_id: str, epochs: int) -> bool:
    """Each metric the tracker logs, once at each step 1..``epochs`` (step = the epoch)."""
    steps = list(range(1, epochs + 1))
    return all(sorted(m.step for m in client.get_metric_history(run_id, key)) == steps for key in METRICS)


def checks(args: argparse.Namespace, load: Load, counted: Counted) -> list[tuple[str, object, object]]:
    """(what, found, expected): every one must agree."""
    e, m = args.epochs, len(METRICS)
    return [
        ("trials Tune ran", load.ran, args.trials),
        ("trials that failed in Tune", load.errors, 0),
        ("the search's trial runs in MLflow", len(counted.trials), args.trials),
        (f"trial runs with all {e} epochs of all {m} metrics", counted.complete, args.trials),
        ("trial runs left RUNNING", counted.status("RUNNING"), 0),
        (f"trial runs with fate `{COMPLETED}`", counted.fates()[COMPLETED], args.trials),
        ("the search's run", counted.search_status, "FINISHED"),
    ]


def report(
    args: argparse.Namespace, load: Load, counted: Counted, rows: list, failed: list[str]
) -> list[str]:
    smoke = ["**SMOKE RUN: a test of the benchmark, not a measurement.**", ""]
    per_minute = 60 * load.ran / load.wall_s
    verdict = f"**CHECK FAILED: {'; '.join(failed)}.**" if failed else "Every count is right."
    return [
        *(smoke if args.smoke else []),
        f"{args.trials} no-op trials of {args.epochs} reports each (each reports its epochs at once and "
        f"trains nothing), {args.concurrent} at a time ({load.cpus_per_trial:g} of Ray's {load.cpus:g} CPUs "
        "each), through the product's search (`search.tuner.build_tuner` on "
        f"`spaces/{SPACE.name}`: OptunaSearch TPE, the rank-checked ASHA with a grace period of the whole "
        "horizon, so it stops nothing, and the budget stopper) with the MLflow tracker "
        "(`search.tracking.MlflowTracker`) on a new SQLite store, as MLflow's default `sqlite:///mlflow.db` "
        "is (in a temporary directory). The tracker writes from the driver, so the store has one writer "
        "however many trials run at once. Then MLflow itself is counted (`MlflowClient.search_runs`, "
        "`get_metric_history`): every trial must have a run, every run every epoch of every metric the "
        f"tracker logs ({', '.join(f'`{k}`' for k in METRICS)}), and no run may be left RUNNING.",
        "",
        "## The load",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| trials | {load.ran} |",
        f"| most trials at once | {load.most_at_once} |",
        f"| search wall time (`build_tuner` + `fit`) | {load.wall_s:.1f} s |",
        f"| trials per minute | {per_minute:.1f} |",
        f"| epochs logged per second | {load.ran * args.epochs / load.wall_s:.1f} |",
        f"| counting MLflow afterwards | {counted.seconds:.1f} s |",
        "",
        "## MLflow, counted",
        "",
        "| count | found | expected |",
        "|---|---:|---:|",
        *[f"| {what} | {found} | {expected} |" for what, found, expected in rows],
        "",
        verdict,
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    for name, what in (
        ("trials", "no-op trials"),
        ("concurrent", "trials at once, each asking for that share of Ray's CPUs"),
        ("epochs", "reports per trial"),
    ):
        p.add_argument(
            f"--{name}", type=int, help=f"{what} (default {DEFAULTS[name]}; --smoke: {SMOKE[name]})"
        )
    p.add_argument("--out", type=Path, help=f"the report (default {OUT}; --smoke: {SMOKE_OUT})")
    smoke = "{trials} trials, {concurrent} at a time, {epochs} epochs: a test of the benchmark".format(
        **SMOKE
    )
    p.add_argument("--smoke", action="store_true", help=smoke)
    args = p.parse_args(argv)
    for name, default in (SMOKE if args.smoke else DEFAULTS).items():
        value = getattr(args, name)
        if value is None:
            setattr(args, name, default)
        elif value < 1:
            raise UsageError(f"--{name} must be at least 1")
    args.out = args.out or (SMOKE_OUT if args.smoke else OUT)  # a smoke run never overwrites the figure
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/load.py", *(sys.argv[1:] if argv is None else argv)])
    quiet_libraries()
    own_ray = not ray.is_initialized()
    if own_ray:
        start_ray(0, None)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            uri = new_store(Path(tmp))
            load = run_search(args, Path(tmp), uri)
            counted = count_runs(uri, args.epochs)
    finally:
        if own_ray:
            ray.shutdown()
    rows = checks(args, load, counted)
    failed = [f"{what}: {found}, not {expected}" for what, found, expected in rows if found != expected]
    lines = report(args, load, counted, rows, failed)
    title = f"Load: {args.trials} trials, {args.concurrent} at a time, on a SQLite MLflow store"
    write_markdown(args.out, title, command, lines)
    print(
        f"{load.ran} trials in {load.wall_s:.1f} s ({60 * load.ran / load.wall_s:.1f} a minute), "
        f"at most {load.most_at_once} at once; wrote {args.out}",
        file=sys.stderr,
    )
    if failed:
        print(f"error: load check failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
