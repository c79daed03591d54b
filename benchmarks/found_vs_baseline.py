"""What a search is for: its best config against the seed's baseline, both retrained alike, on test.

    python benchmarks/found_vs_baseline.py [--task font|mnist] [--seeds 0 1 2 3 4] [--resume] [--smoke]

benchmarks/search_efficiency.py compares searches by the best val_acc a trial reached within the
wall budget, and the baseline by one run given the whole budget: a search's best is a config
trained for one trial's budget, the baseline a model trained for the wall's. This benchmark asks
the question a user has at the end: is the model the search found better than the hand-tuned
one, trained the same way? Per seed:

1. our search, exactly as in search_efficiency.py (search.tuner.build_tuner, the task's reduced
   setting, 2 workers, the wall budget), picks its best trial by its best report's val_acc;
2. that trial's config and the seed's BASELINE config are each trained once more for the wall
   budget, side by side on one CPU and one torch thread each, their schedules over the space's
   MAX_EPOCHS shrunk to what the budget fits (as search_efficiency.py's baseline), training seed
   = the seed, keeping the best validation epoch's weights;
3. both models are scored on the test split, which neither the search nor the epoch choice saw
   (font: held-out font families; MNIST: the official test set).

Writes the report to --out. Each finished seed is kept in ``<out>_done.json`` until the report
is written, so ``--resume`` after a crash or kill runs only the missing seeds, if the task,
setting and code are the same. ``--smoke`` is a tiny run that the tests run so this cannot rot.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import ray
import torch

from hpsearch.benchmarks.efficiency_report import mean_std
from hpsearch.benchmarks.machine import write_markdown
from hpsearch.benchmarks.resumable import ResumeStore, identity, needs_own_ray
from hpsearch.benchmarks.search_efficiency import SEEDS, SMOKE_DIR, TASKS, WORKERS, Setting, start_ray
from hpsearch.plumbing.cli import run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.cluster import quiet_libraries
from hpsearch.search.space import Space, load_space
from hpsearch.search.tuner import SearchSettings, build_tuner
from hpsearch.trainables.data.splits import Splits, per_class_subset
from hpsearch.trainables.loop import Horizon, outputs_as_trained, train

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

OUTS = {
    "font": Path("reports/benchmarks/found_vs_baseline_font.md"),
    "mnist": Path("reports/benchmarks/found_vs_baseline.md"),
}
MNIST_TEST_PER_CLASS = None  # the whole official test set: 10,000 images


@dataclass
class Trained:
    """One model retrained for the wall budget, as the report gives it."""

    val_acc: float  # its best epoch's, the epoch whose weights it keeps
    test_acc: float
    epochs: int  # epochs (reports) it trained
    horizon_epochs: float  # the schedule's horizon, fitted to the budget after its first epoch
    stopped: str


@dataclass
class SeedResult:
    seed: int
    trials: int  # trials the search started
    search_val_acc: float  # its best trial's best report, trained as one trial
    params: dict[str, Any]  # that trial's searched values
    found_is_baseline: bool
    found: Trained
    baseline: Trained

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> SeedResult:
        return cls(**{**saved, "found": Trained(**saved["found"]), "baseline": Trained(**saved["baseline"])})


def load_data(name: str, space: Space, setting: Setting, data_dir: Path, cache_dir: Path) -> Splits:
    """search_efficiency.py's splits, with a test split kept for the end (trials never get it)."""
    if name == "font":
        counts = {
            "train": setting.train_per_class,
            "val": setting.val_per_class,
            "test": setting.val_per_class,
        }
        data = space.task.load(data_dir, cache_dir=cache_dir, download=False, source="generate", **counts)
        return Splits(data.train, data.val, data.test, data.classes)
    data = space.task.load(data_dir, cache_dir=cache_dir, download=False)
    val = data.val if setting.val_per_class is None else per_class_subset(data.val, setting.val_per_class, 0)
    test = data.test if MNIST_TEST_PER_CLASS is None else per_class_subset(data.test, MNIST_TEST_PER_CLASS, 0)
    return Splits(per_class_subset(data.train, setting.train_per_class, seed=0), val, test, data.classes)


def search_best(
    space: Space, data: Splits, setting: Setting, seed: int, run_dir: Path, own_ray: bool
) -> tuple[dict[str, Any], float, int]:
    """Our search as search_efficiency.py runs it; (best trial's params, its best val_acc, trials)."""
    origin = time.time()
    if own_ray:
        start_ray()
    try:
        settings = SearchSettings(
            trials=setting.trials,
            time_budget_s=max(1.0, setting.wall_s - (time.time() - origin)),
            trial_budget_s=setting.trial_budget_s,
            max_epochs=setting.max_epochs,
            cpus_per_trial=1,
            seed=seed,
        )
        results = build_tuner(space, settings, data, run_dir).fit()  # trials never get data.test
    finally:
        if own_ray:
            ray.shutdown()
    scored = [
        (r.metrics_dataframe[space.metric].max(), r.config)
        for r in results
        if r.metrics_dataframe is not None and space.metric in r.metrics_dataframe
    ]
    if not scored:
        raise RuntimeError(f"seed {seed}: no trial of the search reported {space.metric}")
    best_val, params = max(scored, key=lambda s: s[0] if space.mode == "max" else -s[0])
    return dict(params), float(best_val), len(results)


def retrain_for_wall(
    space_path: Path, params: dict[str, Any], data: Splits, seed: int, wall_s: float
) -> Trained:
    """One config trained for the wall budget on one thread, scored on test (a worker process)."""
    torch.set_num_threads(1)
    space = load_space(space_path)
    config = SearchSettings(max_epochs=space.max_epochs).trial_config(space.task, space.baseline, params)
    config["seed"] = seed
    result = train(
        space.task,
        config,
        data,
        device=torch.device("cpu"),
        budget_s=wall_s,
        horizon=Horizon(space.max_epochs, 1, fit_budget=True),
        keep_best=True,
    )
    _, _, test_acc = outputs_as_trained(result.model, data.test, space.task)
    return Trained(result.best_val_acc, test_acc, len(result.history), result.horizon_epochs, result.stopped)


def run_seed(
    space: Space, data: Splits, setting: Setting, seed: int, run_dir: Path, own_ray: bool
) -> SeedResult:
    params, search_val, trials = search_best(space, data, setting, seed, run_dir, own_ray)
    task = space.task
    resolve = SearchSettings(max_epochs=space.max_epochs).trial_config
    is_baseline = resolve(task, space.baseline, params) == resolve(task, space.baseline, {})
    # Side by side, one CPU each: the two runs share the machine's load alike.
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=get_context("spawn")) as pool:
        found = pool.submit(retrain_for_wall, space.path, params, data, seed, setting.wall_s)
        baseline = pool.submit(retrain_for_wall, space.path, {}, data, seed, setting.wall_s)
        return SeedResult(seed, trials, search_val, params, is_baseline, found.result(), baseline.result())


def short_params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


def summary_row(label: str, models: list[Trained]) -> str:
    val, test = mean_std([m.val_acc for m in models]), mean_std([m.test_acc for m in models])
    return f"| {label} | {val} | {test} | {statistics.fmean(m.epochs for m in models):.1f} |"


def report_body(
    name: str, setting: Setting, data: Splits, results: list[SeedResult], smoke: bool
) -> list[str]:
    diffs = [r.found.test_acc - r.baseline.test_acc for r in results]
    ahead = sum(d > 0 for d in diffs)
    spread = max(
        statistics.stdev([r.found.test_acc for r in results]) if len(results) > 1 else 0.0,
        statistics.stdev([r.baseline.test_acc for r in results]) if len(results) > 1 else 0.0,
    )
    mean_diff = statistics.fmean(diffs)
    verdict = "met" if mean_diff > spread and len(results) > 1 else "not met"
    lines = ["**SMOKE RUN: tiny setting, numbers mean nothing.**", ""] if smoke else []
    lines += [
        "## Setting (fixed before the runs)",
        "",
        f"- Data: {TASKS[name].data}; train {len(data.train):,}, val {len(data.val):,}, "
        f"test {len(data.test):,} images"
        + (
            " (test: font families that neither train nor val has)."
            if name == "font"
            else " (test: the official test set)."
        ),
        f"- Search: our search as `benchmarks/search_efficiency.py --task {name}` runs it "
        f"(`search.tuner.build_tuner`: TPE, the baseline first, rank-checked ASHA), 2 workers, "
        f"{setting.wall_s:g} s wall, trials of at most {setting.max_epochs} epochs and "
        f"{setting.trial_budget_s:g} s, a cap of {setting.trials} trials, searcher seed = the seed; "
        "its best trial by its best report's val_acc.",
        f"- Retraining: the best trial's config and the seed's BASELINE, each trained once for "
        f"{setting.wall_s:g} s, side by side on 1 CPU and 1 torch thread each, schedule over the "
        "space's MAX_EPOCHS shrunk to the epochs the budget fits, training seed = the seed, keeping "
        "the best val epoch's weights; then scored once on test.",
        "",
        "## Summary",
        "",
        "Mean ± sample std over seeds.",
        "",
        "| model | val_acc (kept epoch) | test_acc | epochs trained |",
        "|---|---:|---:|---:|",
        summary_row("the search's best config, retrained", [r.found for r in results]),
        summary_row("the seed's baseline, retrained alike", [r.baseline for r in results]),
        "",
        f"test_acc, found minus baseline: {mean_std(diffs)}; the found model is ahead in {ahead} of "
        f"{len(results)} seeds. Spread across seeds (the larger sample std of the two test_acc "
        f"columns): {spread:.4f}. Goal, the found beats the baseline by more than that spread: "
        f"**{verdict}** (mean difference {mean_diff:+.4f}).",
        "",
        "## Per seed",
        "",
        "| seed | trials | search's best val_acc | found config (searched values) "
        "| found val / test / epochs | baseline val / test / epochs |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        found = "the baseline itself" if r.found_is_baseline else short_params(r.params)
        lines.append(
            f"| {r.seed} | {r.trials} | {r.search_val_acc:.4f} | {found} | "
            f"{r.found.val_acc:.4f} / {r.found.test_acc:.4f} / {r.found.epochs} | "
            f"{r.baseline.val_acc:.4f} / {r.baseline.test_acc:.4f} / {r.baseline.epochs} |"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="font", help="what to search (default font)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2 3 4; --smoke: 0)")
    p.add_argument("--smoke", action="store_true", help="a tiny run (~1 min) that tests the plumbing")
    p.add_argument(
        "--resume", action="store_true", help="keep the seeds a killed run of this command finished"
    )
    p.add_argument(
        "--data-dir", type=Path, default=Path("../shared/data"), help="holds MNIST/raw/ (only read)"
    )
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"), help="where the tensor cache goes")
    p.add_argument(
        "--out", type=Path, help="the report (default: reports/benchmarks/ for the task; --smoke: results/)"
    )
    args = p.parse_args(argv)
    if args.seeds is not None and any(s < 0 for s in args.seeds):
        raise UsageError(f"--seeds must be non-negative, got {' '.join(map(str, args.seeds))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    task = TASKS[args.task]
    setting = task.smoke if args.smoke else task.full
    seeds = args.seeds if args.seeds is not None else ((0,) if args.smoke else SEEDS)
    out = args.out or (SMOKE_DIR / (OUTS[args.task].stem + "_smoke.md") if args.smoke else OUTS[args.task])
    command = shlex.join(
        ["python", "benchmarks/found_vs_baseline.py", *(sys.argv[1:] if argv is None else argv)]
    )
    quiet_libraries()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    space = load_space(task.space)
    data = load_data(args.task, space, setting, args.data_dir, args.cache_dir)
    own = needs_own_ray(WORKERS)
    done = ResumeStore(out, identity(args.task, setting, MEASUREMENT_VERSION), args.resume)
    results = []
    with tempfile.TemporaryDirectory(prefix="found-vs-baseline-") as tmp:
        for seed in seeds:
            saved, kept = done.get(f"seed{seed}"), " (kept from the killed run)"
            if saved is None:
                result, kept = run_seed(space, data, setting, seed, Path(tmp) / f"search-{seed}", own), ""
                done.add(f"seed{seed}", asdict(result))
            else:
                result = SeedResult.from_dict(saved)
            results.append(result)
            print(
                f"seed {seed}: search best val_acc {result.search_val_acc:.4f} over {result.trials} trials; "
                f"retrained, test_acc found {result.found.test_acc:.4f} vs baseline "
                f"{result.baseline.test_acc:.4f}{kept}",
                file=sys.stderr,
                flush=True,
            )
    path = write_markdown(
        out,
        f"The search's best config against the seed's baseline on {args.task}, both retrained alike",
        command,
        report_body(args.task, setting, data, results, args.smoke),
    )
    done.clear()  # the report holds every seed now
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
