"""What the search framework costs a trial, and what MLflow logging costs an epoch.

    python benchmarks/overhead.py --data-dir ../shared/data [--trials 16] [--epochs 10]
    python benchmarks/overhead.py --smoke        # synthetic data, a test of the benchmark

Trials that train nothing (each reports E epochs at once, as search/trainable.run_trial reports
them) go through the product's own search, `search.tuner.build_tuner` (OptunaSearch TPE, ASHA,
the budget stopper), on the mnist space. One trial at a time, the time between two trials'
completions is what the search costs a trial. Five runs, each differing from another in one thing:

1. tiny data: a trial's start and end (a worker process, reused from trial to trial since the
   search sets `reuse_actors`, the searcher's proposal, scheduling) and its E reports;
2. and 3. the real MNIST quick subset / full splits: less run 1, handing the data to the trial;
4. as run 3 with the MLflow tracker: less run 3, MLflow per trial inside the search;
5. as run 4 two trials at a time, as the product runs on a 2-core machine (1 CPU per trial).

Each trial also times its own `tune.report` calls: Tune's function trainables report
synchronously, so the wait is the driver's round trip for one epoch (run 4 less run 3: MLflow's
share of it). MLflow is also timed alone: the tracker's callbacks driven directly against a new
SQLite store, per trial start, per epoch (one `log_batch`) and per trial end. Last, an epoch of
the mnist baseline on one torch thread (as a trial runs) gives a real trial's time, and the costs
are set against a trial at the quick preset and at the 10-minute budget.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ray
import ray.cloudpickle
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow import MlflowClient
from ray import tune

from hpsearch.benchmarks.epoch_time import synthetic
from hpsearch.benchmarks.machine import write_markdown
from hpsearch.benchmarks.options import parsed, report_parser
from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.cli import run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.cluster import quiet_libraries, start_ray
from hpsearch.search.data import load_space_data
from hpsearch.search.space import Space, load_space
from hpsearch.search.tracking import METRICS, MlflowTracker
from hpsearch.search.tuner import SearchSettings, build_tuner
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import evaluate, train

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

if __name__ != "__main__":
    # Ray workers may not import this file by name (a checkout not installed): ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "mnist.py"
OUT, SMOKE_OUT = Path("reports/benchmarks/overhead.md"), Path("results/overhead_smoke.md")
EXPERIMENT = "bench-overhead"  # the MLflow experiment in the benchmark's own temporary store
SMOKE_IMAGES = {"quick": 256, "full": 1024}  # synthetic stand-ins for the real splits


class TrialClock(tune.Callback):
    """When each trial started and ended, on the driver's clock (Tune calls callbacks there)."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.ended: list[float] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.append(time.monotonic())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.append(time.monotonic())

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.append(time.monotonic())

    def intervals_s(self) -> list[float]:
        """Times between consecutive trial completions: per trial, the search's start and end left out."""
        ends = sorted(self.ended)
        return [b - a for a, b in zip(ends, ends[1:], strict=False)]

    def most_at_once(self) -> int:
        # At equal times an end sorts before a start: a slot handed on is not two trials at once.
        events = sorted([(t, 1) for t in self.started] + [(t, -1) for t in self.ended])
        running = most = 0
        for _, change in events:
            running += change
            most = max(most, running)
        return most


def noop_trial(params, *, data, task_name, baseline, settings):
    """Reports ``max_epochs`` epochs at once, as search/trainable.run_trial reports them; trains nothing.

    Each report after the first carries ``report_wait_s``, how long the one before it blocked: Tune's
    function trainables report synchronously, so that is the driver's round trip for one epoch.
    """
    import hpsearch.search.trainable  # noqa: F401  (a real trial's imports, paid once per worker process)

    wait = None
    for epoch in range(1, settings.max_epochs + 1):
        values = {k: 0.5 for k in METRICS if k != "time_total_s"}  # Ray sets time_total_s
        result = {"epoch": epoch, **values, "stopped": "completed" if epoch == settings.max_epochs else ""}
        started = time.perf_counter()
        tune.report(result if wait is None else {**result, "report_wait_s": wait})
        wait = time.perf_counter() - started


def new_store(root: Path) -> str:
    """A new SQLite MLflow store in ``root``, its experiment's artifacts there too (not in ./mlruns)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(uri).create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    return uri


def logged_epochs(uri: str, search: str) -> list[int]:
    """Epochs logged per trial run of ``search``: the tracker swallows errors, so check it logged."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    query = f"tags.`{tag.ROLE}` = 'trial' AND tags.`{tag.SEARCH}` = '{search}'"
    runs = client.search_runs([experiment.experiment_id], query, max_results=10_000)
    return sorted(len(client.get_metric_history(r.info.run_id, "val_acc")) for r in runs)


def tracker_for(space: Space, settings: SearchSettings, experiment_dir: Path, uri: str) -> MlflowTracker:
    return MlflowTracker(
        space,
        settings,
        experiment_dir,
        tracking_uri=uri,
        experiment=EXPERIMENT,
        command="benchmark",
        quick=False,
    )


# The searches


@dataclass(frozen=True)
class Plan:
    key: str
    what: str
    data: str  # "tiny", "quick" or "full"
    tracked: bool  # with the MLflow tracker
    serial: bool  # one trial at a time (else 1 CPU per trial, the product's default)


PLANS = (
    Plan("1", "tiny data (8 images)", "tiny", False, True),
    Plan("2", "the quick subset", "quick", False, True),
    Plan("3", "the full splits", "full", False, True),
    Plan("4", "run 3 + the MLflow tracker (SQLite)", "full", True, True),
    Plan("5", "run 4, two trials at a time (1 CPU each)", "full", True, False),
)


@dataclass(frozen=True)
class Measured:
    plan: Plan
    wall_s: float  # build_tuner + fit
    per_trial_s: float  # mean interval between two trials' completions
    per_trial_se_s: float | None  # its standard error (None from a single interval)
    waits_s: list[float]  # every report's round trip but each trial's last
    workers: int  # distinct worker processes that ran trials

    @property
    def report_s(self) -> float:
        return statistics.median(self.waits_s)


def run_search(
    plan: Plan, space: Space, data: Splits, trials: int, epochs: int, root: Path, uri: str
) -> Measured:
    # One trial at a time: each trial asks for every CPU Ray has (the no-op uses none of them).
    cpus = float(ray.cluster_resources().get("CPU", 1.0)) if plan.serial else 1.0
    settings = SearchSettings(
        trials=trials, max_epochs=epochs, grace_period=epochs, cpus_per_trial=cpus, trial_budget_s=600
    )
    experiment_dir = root / "results" / f"run{plan.key}"
    clock = TrialClock()
    callbacks = [clock, *([tracker_for(space, settings, experiment_dir, uri)] if plan.tracked else [])]
    started = time.monotonic()
    results = build_tuner(space, settings, data, experiment_dir, callbacks, trial_fn=noop_trial).fit()
    wall = time.monotonic() - started
    if results.num_errors:
        error = next(r.error for r in results if r.error)
        raise RuntimeError(f"run {plan.key}: a no-op trial failed: {error}")
    # grace_period = max_epochs: ASHA stops no trial, so every trial made every report.
    if sorted(r.metrics["training_iteration"] for r in results) != [epochs] * trials:
        raise RuntimeError(f"run {plan.key}: not every trial reported {epochs} epochs")
    if plan.tracked and logged_epochs(uri, experiment_dir.name) != [epochs] * trials:
        raise RuntimeError(f"run {plan.key}: MLflow did not log every epoch (see the warnings above)")
    waits = [w for r in results for w in r.metrics_dataframe["report_wait_s"].dropna()]
    gaps = clock.intervals_s()
    se = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else None
    pids = {r.metrics["pid"] for r in results}
    return Measured(plan, wall, statistics.mean(gaps), se, waits, len(pids))


# MLflow alone


@dataclass(frozen=True)
class MlflowCost:
    start_ms: float  # a trial's run: create, params, config.yaml (median)
    epoch_ms: float  # one epoch's log_batch (median)
    epoch_p90_ms: float
    end_ms: float  # fate tag and terminate (median)


def time_tracker(space: Space, trials: int, epochs: int, root: Path, uri: str) -> MlflowCost:
    """The tracker's per-trial and per-epoch path, driven as Tune drives it, on a real SQLite store."""
    settings = SearchSettings(trials=trials, max_epochs=epochs)
    tracker = tracker_for(space, settings, root / "results" / "alone", uri)
    tracker.setup()  # the search's run: once per search, not per trial
    starts, epochs_ms, ends = [], [], []
    for i in range(trials):
        trial = SimpleNamespace(trial_id=f"alone_{i:05d}", config={"lr": 1e-4 * (i + 1)}, last_result={})
        starts.append(_ms(tracker.on_trial_start, 0, [], trial))
        for epoch in range(1, epochs + 1):
            result = {"epoch": epoch, **{k: 0.5 + i / 100 for k in METRICS}, "stopped": ""}
            epochs_ms.append(_ms(tracker.on_trial_result, 0, [], trial, result))
        trial.last_result = {**result, "stopped": "completed"}
        ends.append(_ms(tracker.on_trial_complete, 0, [], trial))
    tracker.finish({}, [])
    if logged_epochs(uri, "alone") != [epochs] * trials:
        raise RuntimeError("MLflow did not log every epoch (see the warnings above)")
    p90 = statistics.quantiles(epochs_ms, n=10)[-1] if len(epochs_ms) > 1 else epochs_ms[0]
    return MlflowCost(statistics.median(starts), statistics.median(epochs_ms), p90, statistics.median(ends))


def _ms(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000


# A real trial's time


@dataclass(frozen=True)
class EpochTime:
    quick_s: float  # one epoch on the quick subset, measured
    full_s: float  # one epoch on the full splits, from the measured training and evaluation rates


def time_epochs(space: Space, quick: Splits, full: Splits) -> EpochTime:
    """One epoch of the seed's baseline on one torch thread, as a trial runs with 1 CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task, cpu = space.task, torch.device("cpu")
        config = resolve_config(task, space.baseline, {"epochs": 1})
        few = torch.arange(min(256, len(quick.train)))
        warm = Splits(quick.train.take(few), quick.val.take(few[: len(quick.val)]), quick.test, quick.classes)
        train(task, config, warm, device=cpu, budget_s=1e9)  # warm-up: allocator, kernels
        result = train(task, config, quick, device=cpu, budget_s=1e9)
        started = time.perf_counter()
        evaluate(result.model, quick.val, task)
        eval_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    epoch_s = result.history[0]["epoch_time_s"]
    per_train_image = max(epoch_s - eval_s, 1e-6) / len(quick.train)
    full_s = per_train_image * len(full.train) + eval_s * len(full.val) / len(quick.val)
    return EpochTime(epoch_s, full_s)


# The report


def load_data(args: argparse.Namespace, space: Space) -> dict[str, Splits]:
    if args.smoke:
        full = synthetic(space.task, SMOKE_IMAGES["full"], torch.device("cpu"))
        quick = synthetic(space.task, SMOKE_IMAGES["quick"], torch.device("cpu"))
    else:
        load = lambda quick: load_space_data(  # noqa: E731
            space, args.data_dir, cache_dir=args.cache_dir, quick=quick, download=False
        )
        full, quick = load(False), load(True)
    one = Split(full.train.x[:4], full.train.y[:4])
    return {"tiny": Splits(one, one, one, full.classes), "quick": quick, "full": full}


def handed_over(data: Splits) -> str:
    # What a trial receives: train and val (build_tuner leaves test behind).
    mb = sum(s.x.numel() * s.x.element_size() + s.y.numel() * 8 for s in (data.train, data.val)) / 1e6
    return f"{len(data.train):,} + {len(data.val):,} images ({mb:.1f} MB)"


@dataclass(frozen=True)
class Costs:
    """A trial's framework cost, taken apart from the runs."""

    start_s: float  # starting and ending a trial (its last report included)
    handover_s: dict[str, float]  # handing the data over, by data kind
    report_s: float  # one report's round trip through the driver, without MLflow
    mlflow: MlflowCost  # timed alone

    def mlflow_s(self, epochs: int) -> float:
        return (self.mlflow.start_ms + epochs * self.mlflow.epoch_ms + self.mlflow.end_ms) / 1000

    def framework_s(self, data: str, epochs: int) -> float:
        """What the search costs a trial of ``epochs`` epochs on ``data``, beyond its training."""
        return self.start_s + self.handover_s[data] + (epochs - 1) * self.report_s + self.mlflow_s(epochs)


def split_costs(runs: dict[str, Measured], alone: MlflowCost, epochs: int) -> Costs:
    # Runs 1-3 differ only in the data: their reports cost the same, so pool them.
    report_s = statistics.median([w for key in "123" for w in runs[key].waits_s])
    start_s = runs["1"].per_trial_s - (epochs - 1) * report_s
    handover = {
        kind: runs[key].per_trial_s - runs["1"].per_trial_s for key, kind in (("2", "quick"), ("3", "full"))
    }
    return Costs(start_s, {"tiny": 0.0, **handover}, report_s, alone)


def report(
    args: argparse.Namespace,
    space: Space,
    data: dict[str, Splits],
    ray_start_s: float | None,
    store_s: float,
    runs: dict[str, Measured],
    costs: Costs,
    epoch: EpochTime,
    figure: Path,
) -> tuple[list[str], list[str]]:
    """(the report's Markdown lines, the ratios it ends with)."""
    e, alone = args.epochs, costs.mlflow
    fixed = statistics.mean(m.wall_s - args.trials * m.per_trial_s for m in runs.values() if m.plan.serial)
    run_rows = [
        f"| {m.plan.key} | {m.plan.what} | {m.wall_s:.1f} s | {m.per_trial_s:.2f} s "
        f"| {'-' if m.per_trial_se_s is None else f'{m.per_trial_se_s:.2f} s'} | {m.report_s * 1000:.1f} ms "
        f"| {m.workers} |"
        for m in runs.values()
    ]
    in_search_epoch_ms = (runs["4"].report_s - runs["3"].report_s) * 1000
    in_search_trial_s = runs["4"].per_trial_s - runs["3"].per_trial_s
    ray_start = "not measured (Ray was already running)" if ray_start_s is None else f"{ray_start_s:.1f} s"
    split_rows = [
        f"| Ray start (once per search) | {ray_start} | `search.cluster.start_ray` on this machine |",
        f"| the search's start and end (once per search) | {fixed:.1f} s "
        "| wall - trials x per trial, runs 1-4 |",
        f"| a trial's start and end | {costs.start_s:.2f} s | run 1 less its reports but the last |",
        f"| one report (an epoch's `tune.report`, through the driver) | {costs.report_s * 1000:.1f} ms "
        "| median round trip, runs 1-3 |",
        f"| data hand-over, quick subset: {handed_over(data['quick'])} | {costs.handover_s['quick']:.2f} s "
        "| run 2 - run 1 |",
        f"| data hand-over, full splits: {handed_over(data['full'])} | {costs.handover_s['full']:.2f} s "
        "| run 3 - run 1 |",
        f"| MLflow in the search, per epoch | {in_search_epoch_ms:.1f} ms | round trip, run 4 - run 3 |",
        f"| MLflow in the search, per trial of {e} epochs | {in_search_trial_s:.2f} s | run 4 - run 3 |",
        f"| MLflow alone: a trial's run started | {alone.start_ms:.1f} ms | the tracker's callbacks, timed |",
        f"| MLflow alone: one epoch logged | {alone.epoch_ms:.1f} ms (p90 {alone.epoch_p90_ms:.1f} ms) "
        "| the tracker's callbacks, timed |",
        f"| MLflow alone: a trial's run ended | {alone.end_ms:.1f} ms | the tracker's callbacks, timed |",
        f"| MLflow: a new SQLite store (once) | {store_s:.1f} s | `MlflowClient` creating its schema |",
    ]

    # A trial at the quick preset (as it trains, and using its whole budget) and at the 10-minute rule.
    quick_epochs, quick_budget = space.quick["max_epochs"], float(space.quick["budget_s"])
    trained = min(quick_epochs * epoch.quick_s, quick_budget)
    full_epochs = max(1, min(space.max_epochs, int(space.budget_s // epoch.full_s)))
    trials = [  # (label, data handed over, epochs, training seconds)
        (f"quick preset as trained: {quick_epochs} quick-subset epochs", "quick", quick_epochs, trained),
        (f"quick preset, its whole budget ({quick_budget:.0f} s)", "quick", quick_epochs, quick_budget),
        (f"10-minute budget: {full_epochs} full epochs", "full", full_epochs, space.budget_s),
    ]
    share_rows, shares = [], []
    for label, kind, epochs, seconds in trials:
        fw, ml = costs.framework_s(kind, epochs), costs.mlflow_s(epochs)
        shares.append(100 * fw / (fw + seconds))
        share_rows.append(
            f"| {label} | {seconds:,.1f} s | {fw:.2f} s | {shares[-1]:.2f}% "
            f"| {ml * 1000:,.0f} ms | {100 * ml / (fw + seconds):.3f}% |"
        )
    per_epoch = (100 * alone.epoch_ms / 1000 / epoch.quick_s, 100 * alone.epoch_ms / 1000 / epoch.full_s)
    ratios = [
        f"framework share of a trial: {shares[0]:.1f}% at the quick preset as trained, "
        f"{shares[1]:.2f}% of its whole budget, {shares[2]:.2f}% at the {space.budget_s:.0f} s budget",
        f"MLflow per epoch / epoch time: {per_epoch[0]:.3f}% (quick subset), "
        f"{per_epoch[1]:.4f}% (full splits)",
        f"per trial, two at a time / one at a time: {runs['5'].per_trial_s / runs['4'].per_trial_s:.2f}x",
        f"per trial, with MLflow / without: {runs['4'].per_trial_s / runs['3'].per_trial_s:.2f}x",
    ]
    smoke = ["**SMOKE RUN: synthetic data, a test of the benchmark, not a measurement.**", ""]
    lines = [
        *(smoke if args.smoke else []),
        "No-op trials (each reports its epochs at once and trains nothing) through the product's search "
        "(`search.tuner.build_tuner`: OptunaSearch TPE, ASHA, the budget stopper) on "
        f"`spaces/{SPACE.name}`: {args.trials} trials of {e} reports per run. **Per trial** is the mean "
        "time between two trials' completions (with its standard error), which leaves out the search's own "
        "start and end. **Report** is the median time a trial's `tune.report` blocked (Tune's function "
        "trainables report synchronously: the driver's round trip for an epoch), timed in the trial. "
        "Runs 1-4 take one trial at a time (each asks for every CPU), so per trial is a trial's whole "
        "cost; run 5 takes two at a time (1 CPU each, the product's default here). The search reuses "
        "worker processes from trial to trial (the last column counts them).",
        "",
        "| run | what | search wall | per trial | ± | report | worker processes |",
        "|---|---|---:|---:|---:|---:|---:|",
        *run_rows,
        "",
        f"![per trial, by run]({figure.name})",
        "",
        "## The cost, split",
        "",
        "| part | cost | from |",
        "|---|---:|---|",
        *split_rows,
        "",
        f"Check: the parts add up to {costs.framework_s('full', e):.2f} s for a trial of run 4 "
        f"(measured: {runs['4'].per_trial_s:.2f} s).",
        "",
        "## As a share of a trial",
        "",
        "A real epoch: the mnist baseline on one torch thread (a trial's `--cpus-per-trial 1`), "
        f"{epoch.quick_s:.1f} s on the quick subset (measured after a warm-up), {epoch.full_s:.1f} s on the "
        "full splits (from the measured training and evaluation rates). A trial's framework cost is its "
        "start and end, its data hand-over, a report per epoch after the first, and MLflow (timed alone: "
        "start, epochs, end); the shares are of the trial's training plus that cost.",
        "",
        "| trial | training | framework | framework share | of which MLflow | MLflow share |",
        "|---|---:|---:|---:|---:|---:|",
        *share_rows,
        "",
        f"MLflow per epoch ({alone.epoch_ms:.1f} ms, one `log_batch` from the driver) is {per_epoch[0]:.3f}% "
        f"of a quick-subset epoch and {per_epoch[1]:.4f}% of a full epoch.",
        "",
        "## Ratios",
        "",
        *[f"- {r}" for r in ratios],
        "",
        "Other processes on this machine slow every figure: compare ratios, and rerun before trusting a "
        "difference smaller than its runs' standard errors (a hand-over near 0 s, or below it, is noise).",
    ]
    return lines, ratios


def draw(runs: dict[str, Measured], path: Path) -> None:
    fig = Figure(figsize=(7.0, 3.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = list(runs.values())[::-1]
    labels = [f"{m.plan.key}. {m.plan.what}" for m in shown]
    values = [m.per_trial_s for m in shown]
    colors = ["tab:blue" if m.plan.serial else "tab:orange" for m in shown]
    ax.barh(labels, values, xerr=[m.per_trial_se_s or 0.0 for m in shown], color=colors)
    for y, v in enumerate(values):
        ax.text(v, y, f"  {v:.2f} s", va="center", fontsize=8)
    ax.set_xlabel("seconds per trial (mean time between completions)")
    ax.set_title("What the search costs a trial that trains nothing", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(0, max(values) * 1.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = report_parser(__doc__, OUT, SMOKE_OUT, "synthetic data, 2 trials of 2 epochs: a test")
    p.add_argument("--trials", type=int, help="no-op trials per run (default 16; --smoke: 2)")
    p.add_argument("--epochs", type=int, help="reports per trial (default 10; --smoke: 2)")
    args = parsed(p, argv)
    args.trials = args.trials if args.trials is not None else (2 if args.smoke else 16)
    args.epochs = args.epochs if args.epochs is not None else (2 if args.smoke else 10)
    if args.trials < 2 or args.epochs < 2:
        raise UsageError("--trials and --epochs must be at least 2 (costs are differences between them)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/overhead.py", *(sys.argv[1:] if argv is None else argv)])
    quiet_libraries()
    space = load_space(SPACE)
    data = load_data(args, space)  # a missing MNIST fails here, in one line, before Ray starts
    ray_start_s, own_ray = None, not ray.is_initialized()
    if own_ray:
        started = time.monotonic()
        start_ray(0, None)
        ray_start_s = time.monotonic() - started
    try:
        with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
            root = Path(tmp)
            started = time.monotonic()
            uri = new_store(root)
            store_s = time.monotonic() - started
            runs = {}
            for plan in PLANS:
                m = run_search(plan, space, data[plan.data], args.trials, args.epochs, root, uri)
                runs[plan.key] = m
                print(
                    f"run {plan.key}: {m.per_trial_s:5.2f} s per trial, report {m.report_s * 1000:6.1f} ms "
                    f"({plan.what})",
                    file=sys.stderr,
                )
            alone = time_tracker(space, args.trials, args.epochs, root, uri)
    finally:
        if own_ray:
            ray.shutdown()
    epoch = time_epochs(space, data["quick"], data["full"])
    figure = args.out.with_suffix(".png")
    draw(runs, figure)
    costs = split_costs(runs, alone, args.epochs)
    lines, ratios = report(args, space, data, ray_start_s, store_s, runs, costs, epoch, figure)
    write_markdown(args.out, "Overhead: what the search costs a trial, and MLflow an epoch", command, lines)
    for ratio in ratios:
        print(ratio, file=sys.stderr)
    print(f"wrote {args.out} and {figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
