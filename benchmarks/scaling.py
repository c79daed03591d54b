"""Trials completed per hour with 1 and 2 concurrent workers on this machine, and on a two-node cluster.

    python benchmarks/scaling.py --data-dir ../shared/data [--trials 16]
    python benchmarks/scaling.py --smoke        # synthetic data, a test of the benchmark

One fixed workload in every set-up: N trials, each one epoch of the mnist seed's baseline
(`search.trainable.run_trial` on the baseline whatever the searcher proposes, so that every trial
does the same work) on a fixed per-class subset of real MNIST, with 1 CPU and 1 torch thread per
trial. The search is the product's own (`build_tuner` with the MLflow tracker), and it joins
each Ray cluster as `search/run.py --address ADDR` does (`search.cluster.start_ray`). The clusters
are local Ray clusters (`ray.cluster_utils.Cluster`) in a temporary directory, started one after
the other and differing only in shape: one node of 1 CPU, one node of 2 CPUs, two nodes of 1 CPU.
Trials per hour count the search's whole wall time, its own start and end included, but not the
cluster's start, which a cluster pays once for many searches.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.cloudpickle
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hpsearch.benchmarks.epoch_time import synthetic
from hpsearch.benchmarks.machine import write_markdown
from hpsearch.benchmarks.options import parsed, report_parser
from hpsearch.benchmarks.overhead import SPACE, TrialClock, new_store, tracker_for
from hpsearch.plumbing.cli import run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.cluster import quiet_libraries, start_ray
from hpsearch.search.data import load_space_data
from hpsearch.search.space import Space, load_space
from hpsearch.search.trainable import run_trial
from hpsearch.search.tuner import SearchSettings, build_tuner
from hpsearch.trainables.data.splits import Split, Splits, per_class_subset

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

if __name__ != "__main__":
    # Ray workers may not import this file by name (a checkout not installed): ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

OUT, SMOKE_OUT = Path("reports/benchmarks/scaling.md"), Path("results/scaling_smoke.md")
# The workload, fixed before measuring: ~5 s of training per trial on one thread of this machine's CPU.
TRAIN_PER_CLASS, VAL_PER_CLASS = 300, 100
SMOKE_IMAGES = 128
SHAPES = (  # (set-up, CPUs of each Ray node)
    ("1 worker", (1,)),
    ("2 workers", (2,)),
    ("2 nodes x 1 worker", (1, 1)),
)


def fixed_trial(params, *, data, task_name, baseline, settings):
    """`run_trial` on the seed's baseline, whatever the searcher proposed: every trial does the same work."""
    run_trial({}, data=data, task_name=task_name, baseline=baseline, settings=settings)


@dataclass(frozen=True)
class Case:
    name: str
    nodes: tuple[int, ...]  # CPUs of each node
    start_s: float  # the cluster's start and the search joining it
    wall_s: float  # build_tuner + fit
    trials: int
    most_at_once: int
    train_s: float  # a trial's training (its one epoch), mean

    @property
    def per_hour(self) -> float:
        return 3600 * self.trials / self.wall_s

    @property
    def busy(self) -> float:
        """The share of the workers' time spent training."""
        return self.trials * self.train_s / (self.wall_s * sum(self.nodes))


def run_case(
    name: str, nodes: tuple[int, ...], space: Space, data: Splits, trials: int, root: Path, uri: str
) -> Case:
    from ray.cluster_utils import Cluster

    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": nodes[0], "include_dashboard": False})
    try:
        for cpus in nodes[1:]:
            cluster.add_node(num_cpus=cpus)
        start_ray(0, cluster.address)  # as `search/run.py --address ADDR` joins a cluster
        start_s = time.monotonic() - started
        settings = SearchSettings(trials=trials, max_epochs=1, cpus_per_trial=1, trial_budget_s=600)
        experiment_dir = root / "results" / "-".join(map(str, nodes))
        clock = TrialClock()
        callbacks = [clock, tracker_for(space, settings, experiment_dir, uri)]
        started = time.monotonic()
        results = build_tuner(space, settings, data, experiment_dir, callbacks, trial_fn=fixed_trial).fit()
        wall = time.monotonic() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
    if results.num_errors:
        error = next(r.error for r in results if r.error)
        raise RuntimeError(f"{name}: a trial failed: {error}")
    if len(results) != trials or any(r.metrics.get("epoch") != 1 for r in results):
        raise RuntimeError(f"{name}: not every trial trained its epoch")
    train_s = statistics.mean(r.metrics["epoch_time_s"] for r in results)
    return Case(name, nodes, start_s, wall, trials, clock.most_at_once(), train_s)


def load_data(args: argparse.Namespace, space: Space) -> Splits:
    if args.smoke:
        return synthetic(space.task, SMOKE_IMAGES, torch.device("cpu"))
    full = load_space_data(space, args.data_dir, cache_dir=args.cache_dir, download=False)
    empty = Split(full.test.x[:0], full.test.y[:0])  # trials never see test
    train = per_class_subset(full.train, TRAIN_PER_CLASS, seed=0)
    return Splits(train, per_class_subset(full.val, VAL_PER_CLASS, seed=0), empty, full.classes)


def report(
    args: argparse.Namespace, data: Splits, cases: list[Case], figure: Path
) -> tuple[list[str], list[str]]:
    """(the report's Markdown lines, the ratios it ends with)."""
    one = cases[0].per_hour
    rows = [
        f"| {c.name} | {' + '.join(map(str, c.nodes))} | {c.start_s:.1f} s | {c.trials} | {c.most_at_once} "
        f"| {c.wall_s:.1f} s | {c.per_hour:,.0f} | {c.per_hour / one:.2f}x | {c.train_s:.2f} s "
        f"| {100 * c.busy:.0f}% |"
        for c in cases
    ]
    ratios = [f"{c.name} / 1 worker: {c.per_hour / one:.2f}x trials per hour" for c in cases[1:]]
    ratios.append(f"2 nodes / 2 workers on one node: {cases[2].per_hour / cases[1].per_hour:.2f}x")
    smoke = ["**SMOKE RUN: synthetic data, a test of the benchmark, not a measurement.**", ""]
    where = "synthetic images" if args.smoke else "real MNIST, a seeded per-class subset"
    cap = os.environ.get("TUNE_MAX_PENDING_TRIALS_PG", "auto")
    pending = (
        "as many as the cluster has slots (`build_tuner` sets `max_concurrent_trials`; with a searcher "
        "of its own Tune would start one at a time)"
        if cap == "auto"
        else f"{cap} (TUNE_MAX_PENDING_TRIALS_PG)"
    )
    lines = [
        *(smoke if args.smoke else []),
        f"The workload, the same in every set-up: {args.trials} trials, each one epoch of the mnist seed's "
        f"baseline on {len(data.train):,} training and {len(data.val):,} validation images ({where}), "
        "1 CPU and 1 torch thread per trial; the product's search (`search.tuner.build_tuner`: OptunaSearch "
        "TPE, ASHA, the budget stopper, with the MLflow tracker on a SQLite store), every trial running "
        "`search.trainable.run_trial` on the baseline whatever the searcher proposes. Each set-up is a "
        "local Ray cluster (`ray.cluster_utils.Cluster`) that the search joins as `search/run.py "
        "--address ADDR` does; the two nodes of the last share this machine's cores, so it measures Ray's "
        "multi-node path, not more hardware.",
        "",
        "- **start**: starting the cluster and joining it (once per cluster, not in trials per hour).",
        "- **most at once**: the most trials running at the same time, from Tune's trial start and end "
        "events; with 1 CPU per node, 2 in the two-node set-up means both nodes ran trials. Trials "
        f"starting at once: {pending}.",
        "- **trials per hour**: trials / the search's wall time (its own start and end included).",
        "- **training per trial**: a trial's own epoch time (`epoch_time_s`), mean; it grows when the "
        "trials and the driver contend for the cores.",
        "- **workers training**: trials x training per trial / (wall x CPUs): the share of the workers' "
        "time spent training rather than starting, handing over data and reporting.",
        "",
        "| set-up | node CPUs | start | trials | most at once | search wall | trials per hour | speed-up "
        "| training per trial | workers training |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"![trials per hour]({figure.name})",
        "",
        "## Ratios",
        "",
        *[f"- {r}" for r in ratios],
        "",
        "Other processes on this machine slow every figure: compare ratios within one run.",
    ]
    return lines, ratios


def draw(cases: list[Case], path: Path) -> None:
    fig = Figure(figsize=(6.0, 3.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = [c.per_hour for c in cases]
    ax.bar([c.name for c in cases], values, color=["tab:gray", "tab:blue", "tab:green"])
    for x, c in enumerate(cases):
        ax.text(x, c.per_hour, f"{c.per_hour:,.0f}\n{c.per_hour / values[0]:.2f}x", ha="center", va="bottom")
    ax.set_ylabel("trials completed per hour")
    ax.set_ylim(0, max(values) * 1.25)
    ax.set_title("The same trials, 1 vs 2 workers, one node vs two", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = report_parser(__doc__, OUT, SMOKE_OUT, "synthetic data, 2 trials per set-up: a test")
    p.add_argument("--trials", type=int, help="trials per set-up (default 16; --smoke: 2)")
    args = parsed(p, argv)
    args.trials = args.trials if args.trials is not None else (2 if args.smoke else 16)
    if args.trials < 2:
        raise UsageError("--trials must be at least 2 (two workers need two trials)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/scaling.py", *(sys.argv[1:] if argv is None else argv)])
    quiet_libraries()
    space = load_space(SPACE)
    data = load_data(args, space)  # a missing MNIST fails here, in one line, before any Ray starts
    if ray.is_initialized():  # start_ray would join it, not the clusters measured here
        raise UsageError("scaling starts its own Ray clusters: run it in a process without Ray")
    previous = os.environ.get("RAY_TMPDIR")
    # The clusters' sessions, sockets and address file in a directory of our own, not in /tmp/ray
    # where another Ray on this machine keeps its own; a short path, for Unix socket names.
    with tempfile.TemporaryDirectory(prefix="hps-", ignore_cleanup_errors=True) as tmp:
        os.environ["RAY_TMPDIR"] = tmp
        try:
            uri = new_store(Path(tmp))
            cases = []
            for name, nodes in SHAPES:
                cases.append(run_case(name, nodes, space, data, args.trials, Path(tmp), uri))
                c = cases[-1]
                print(
                    f"{name:20s} {c.per_hour:6.0f} trials/h, {c.wall_s:5.1f} s, {c.most_at_once} at once",
                    file=sys.stderr,
                )
        finally:
            if previous is None:
                os.environ.pop("RAY_TMPDIR", None)
            else:
                os.environ["RAY_TMPDIR"] = previous
    figure = args.out.with_suffix(".png")
    draw(cases, figure)
    lines, ratios = report(args, data, cases, figure)
    write_markdown(args.out, "Scaling: trials per hour, 1 vs 2 workers, one node vs two", command, lines)
    for ratio in ratios:
        print(ratio, file=sys.stderr)
    print(f"wrote {args.out} and {figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
