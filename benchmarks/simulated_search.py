"""Our search against the usual ones on LCBench, on a simulated clock (search/simulate.py).

    python benchmarks/simulated_search.py                      # 6 tasks x 20 seeds, 4 workers
    python benchmarks/simulated_search.py --smoke              # 2 tasks x 2 seeds, small budget

LCBench is YAHPO Gym's surrogate of MLP learning curves (52 epochs) on OpenML tasks, read
offline from --data-dir with the optional packages yahpo-gym and onnxruntime. Every method gets
the same budget in worker-epochs on N workers; one epoch is one unit of simulated time. The
metric is validation accuracy; a method's incumbent is the best value it has seen at any epoch.
Regret is normalised per task between the best (0) and the median (1) of 20,000 random configs
at epoch 52, a reference computed once per task and cached under --cache-dir.

The methods: ours (search.searcher.make_searcher + search.stopping.make_scheduler, as the search
builds them) and ours without stopping; Ray's OptunaSearch as shipped (univariate TPE) with FIFO
and with ASHA as shipped (grace 1, eta 4); random search (OptunaSearch with Optuna's
RandomSampler) with that ASHA and with FIFO; plain Optuna's TPE at its defaults with no pruner,
MedianPruner and HyperbandPruner (resources 1..52), its N workers sharing one study. On request
(--methods), also our searcher with Ray's stock ASHA, as `search/run.py --scheduler asha` runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from hpsearch.benchmarks.machine import write_markdown
from hpsearch.plumbing.cli import run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.searcher import make_searcher
from hpsearch.search.settings import SearchSettings
from hpsearch.search.simulate import Simulation, best_so_far, simulate_optuna, simulate_ray
from hpsearch.search.space import Space
from hpsearch.search.stopping import make_scheduler

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

REPO = Path(__file__).resolve().parents[1]
OUT, SMOKE_OUT = REPO / "reports/benchmarks/simulated_search.md", REPO / "results/simulated_search_smoke.md"
TASKS = ["3945", "7593", "34539", "126025", "146212", "167104"]
MAX_T = 52  # LCBench's epochs
METRIC, MODE = "val_acc", "max"
REFERENCE_CONFIGS = 20_000
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
TARGET_REGRET = 0.1  # "time to target": first budget at which the incumbent's regret is this or less

OURS, OURS_FIFO = "ours (TPE + rank-checked ASHA)", "ours, no stopping (our TPE + FIFO)"
RAY_ASHA, RAY_FIFO = "Ray OptunaSearch + ASHA (as shipped)", "Ray OptunaSearch, no stopping (FIFO)"
RANDOM_ASHA, RANDOM = "random + ASHA (as shipped)", "random, no stopping"
OPTUNA_MEDIAN, OPTUNA_HB = "Optuna TPE + MedianPruner", "Optuna TPE + HyperbandPruner"
OPTUNA_NOP = "Optuna TPE, no stopping"
# Our searcher with Ray's stock ASHA (`--scheduler asha`, eta 3, grace 1): how much of ours' result
# is the rank check. Not in the default run, whose report (of 9 methods) it would change the ranks of.
OURS_STOCK_ASHA = "ours + stock ASHA (--scheduler asha)"
DEFAULT_METHODS = [
    *(OURS, OURS_FIFO, RAY_FIFO, RAY_ASHA, RANDOM_ASHA, RANDOM),
    *(OPTUNA_NOP, OPTUNA_MEDIAN, OPTUNA_HB),
]
METHODS = [*DEFAULT_METHODS, OURS_STOCK_ASHA]


class LCBench:
    """One LCBench task as a simulate.Benchmark: its 7 knobs and a cached surrogate oracle."""

    metric, mode, max_t = METRIC, MODE, MAX_T

    def __init__(self, data_dir: Path, task: str) -> None:
        from yahpo_gym import benchmark_set, local_config

        local_config.init_config()
        local_config.set_data_path(str(data_dir))
        # One ONNX thread: the benchmark's processes share a small machine.
        self.bench = benchmark_set.BenchmarkSet("lcbench", check=False, multithread=False)
        self.bench.set_instance(task)
        self.task = task
        self.space = self.bench.get_opt_space()
        self.knobs = [
            h for h in self.space.get_hyperparameters() if h.name not in ("OpenML_task_id", "epoch")
        ]
        self.curves: dict[tuple, dict[int, float]] = {}

    def suggest(self, trial: optuna.Trial) -> None:
        for h in self.knobs:  # the ConfigSpace's own ranges and log scales
            if type(h).__name__ == "UniformIntegerHyperparameter":
                trial.suggest_int(h.name, h.lower, h.upper, log=h.log)
            else:
                trial.suggest_float(h.name, h.lower, h.upper, log=h.log)

    def query(self, configs: list[dict[str, Any]], epochs: list[int]) -> list[float]:
        base = {"OpenML_task_id": self.task}
        rows = [{**base, **c, "epoch": e} for c, e in zip(configs, epochs, strict=True)]
        return [r["val_accuracy"] / 100 for r in self.bench.objective_function(rows)]

    def __call__(self, config: dict[str, Any], epoch: int) -> float:
        key = tuple(sorted(config.items()))
        curve = self.curves.setdefault(key, {})
        if epoch not in curve:
            # Curves are read in doubling chunks: a trial stopped at epoch 1 costs one query,
            # a full one seven, and no query is wasted on epochs a trial never reaches.
            chunk = list(range(epoch, min(MAX_T, 2 * epoch) + 1))
            curve.update(zip(chunk, self.query([config] * len(chunk), chunk), strict=True))
        return curve[epoch]

    def reference(self, cache_dir: Path) -> tuple[float, float]:
        """The best and the median of 20,000 random configs at the last epoch (cached)."""
        path = cache_dir / f"lcbench_{self.task}_reference_{REFERENCE_CONFIGS}.json"
        if not path.is_file():
            self.space.seed(0)
            configs = [c.get_dictionary() for c in self.space.sample_configuration(REFERENCE_CONFIGS)]
            configs = [{h.name: c[h.name] for h in self.knobs} for c in configs]
            finals = []
            for i in range(0, len(configs), 1000):
                finals += self.query(configs[i : i + 1000], [MAX_T] * len(configs[i : i + 1000]))
            path.write_text(json.dumps({"best": max(finals), "median": statistics.median(finals)}))
        ref = json.loads(path.read_text())
        return ref["best"], ref["median"]


def run_method(
    method: str, bench: LCBench, seed: int, workers: int, budget: float, tmp: Path
) -> tuple[Simulation, Any]:
    """One method's search on one task with one seed, and its scheduler (None for plain Optuna)."""
    sim_args = dict(max_t=MAX_T, workers=workers, budget=budget)
    if method in (OPTUNA_NOP, OPTUNA_MEDIAN, OPTUNA_HB):
        pruner = {
            OPTUNA_NOP: optuna.pruners.NopPruner(),
            OPTUNA_MEDIAN: optuna.pruners.MedianPruner(),
            OPTUNA_HB: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_T),
        }[method]
        # A plain user's choices: Optuna's defaults, seeded.
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner
        )
        return simulate_optuna(study, bench.suggest, bench, **sim_args), None
    if method in (OURS, OURS_FIFO, OURS_STOCK_ASHA):
        rule = "asha" if method == OURS_STOCK_ASHA else "rank-asha"
        settings = SearchSettings(max_epochs=MAX_T, seed=seed, trials=10**6, scheduler=rule)
        space = Space(Path("lcbench"), None, METRIC, MODE, math.inf, MAX_T, {}, bench.suggest)
        searcher = make_searcher(
            space, seed=seed, results_dir=tmp, n_startup_trials=settings.n_startup_trials
        )
        scheduler = FIFOScheduler() if method == OURS_FIFO else make_scheduler(settings)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed) if method in (RANDOM, RANDOM_ASHA) else None
        # Ray's own TPE is seeded through `seed`; a sampler passed in carries its own seed.
        seeded = {"sampler": sampler} if sampler else {"seed": seed}
        searcher = OptunaSearch(space=bench.suggest, metric=METRIC, mode=MODE, **seeded)
        shipped = ASHAScheduler(time_attr="training_iteration", max_t=MAX_T)  # grace 1, eta 4
        scheduler = shipped if method in (RAY_ASHA, RANDOM_ASHA) else FIFOScheduler()
    return simulate_ray(
        searcher, scheduler, bench, metric=METRIC, mode=MODE, seed=seed, **sim_args
    ), scheduler


@dataclass
class Run:
    task: str
    seed: int
    method: str
    regret: list[float]  # at each budget multiple
    to_target: float  # budget (in max_t) at which regret first reached TARGET_REGRET; inf if never
    trials: int
    seconds: float  # real time the simulation took
    rule: str | None
    rho: dict[int, float]
    steps: list[tuple[float, float]]  # (budget in max_t, regret) at each new incumbent


_benches: dict[str, LCBench] = {}  # one surrogate per task and process


def one_run(
    job: tuple[str, int, str], data_dir: Path, cache_dir: Path, workers: int, multiples: list[float]
) -> Run:
    task, seed, method = job
    if task not in _benches:
        _benches[task] = LCBench(data_dir, task)
    bench = _benches[task]
    best, median = bench.reference(cache_dir)
    started = time.perf_counter()
    # Our searcher keeps its study in a journal file; in memory (tmpfs) it costs 6x less.
    with tempfile.TemporaryDirectory(prefix="sim-", dir=SCRATCH) as tmp:
        sim, scheduler = run_method(method, bench, seed, workers, max(multiples) * MAX_T, Path(tmp))
    seconds = time.perf_counter() - started
    regret = [(best - v) / (best - median) for v in best_so_far(sim, [m * MAX_T for m in multiples], MODE)]
    steps, incumbent = [], -math.inf
    for p in sim.points:
        if p.value > incumbent:
            incumbent = p.value
            steps.append((sim.used(p.t) / MAX_T, (best - incumbent) / (best - median)))
    to_target = time_to(steps, TARGET_REGRET)
    rule = scheduler.rule() if hasattr(scheduler, "rule") else None  # ours says what it did
    rho = dict(getattr(scheduler, "rho", {}))
    return Run(task, seed, method, regret, to_target, len(sim.trials), seconds, rule, rho, steps)


def time_to(steps: list[tuple[float, float]], regret: float) -> float:
    """The budget (x max_t) at which a run's incumbent first reached ``regret``; inf if never."""
    return next((b for b, r in steps if r <= regret + 1e-12), math.inf)


def rank_rows(runs: list[Run], k: int) -> dict[str, float]:
    """Mean rank (1 = best) of each method at budget index k over (task, seed)."""
    by_problem: dict[tuple, dict[str, float]] = {}
    for r in runs:
        by_problem.setdefault((r.task, r.seed), {})[r.method] = r.regret[k]
    ranks: dict[str, list[float]] = {}
    for regrets in by_problem.values():
        methods = list(regrets)
        order = np.argsort(np.argsort([regrets[m] for m in methods]))
        values = np.array([regrets[m] for m in methods])
        for m, v in zip(methods, values, strict=True):  # ties share their mean rank
            ranks.setdefault(m, []).append(float(np.mean(order[values == v])) + 1)
    return {m: statistics.mean(r) for m, r in ranks.items()}


def report(runs: list[Run], args: argparse.Namespace, wall_s: float) -> list[str]:
    methods = [m for m in METHODS if any(r.method == m for r in runs)]
    ks = range(len(args.budget_multiples))
    ranks = [rank_rows(runs, k) for k in ks]
    heads = [f"{m:g}x max_t" for m in args.budget_multiples]
    lines = [
        f"LCBench (YAHPO Gym surrogate), tasks {', '.join(args.tasks)}; seeds 0..{args.seeds - 1}; "
        f"{args.workers} workers; budgets in worker-epochs, as multiples of max_t = {MAX_T} epochs. "
        f"The simulation took {wall_s / 60:.1f} min on {args.processes} process(es).",
        "",
        "Normalised regret of the best validation accuracy seen so far (0 = best of 20,000 random "
        "configs at epoch 52, 1 = their median; mean ± s.e. over tasks x seeds), and mean rank "
        f"among the methods (1 = best). Every run's figures: `{args.out.stem}_runs.csv.gz`.",
        "",
        "| method | "
        + " | ".join(f"regret {h}" for h in heads)
        + " | "
        + " | ".join(f"rank {h}" for h in heads)
        + " |",
        "|---|" + "---:|" * (2 * len(heads)),
    ]
    for m in methods:
        mine = [r for r in runs if r.method == m]
        cells = []
        for k in ks:
            values = [r.regret[k] for r in mine]
            se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
            cells.append(f"{statistics.mean(values):.3f} ± {se:.3f}")
        cells += [f"{ranks[k][m]:.2f}" for k in ks]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Time to target: the budget (x max_t) at which the incumbent's regret first reached "
        f"{TARGET_REGRET}; median over runs (inf: not reached within {max(args.budget_multiples):g}x), "
        "share of runs that reached it; trials started and real seconds per run.",
        "",
        "| method | median time to target | reached | trials per run | seconds per run |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in methods:
        mine = [r for r in runs if r.method == m]
        reached = sum(math.isfinite(r.to_target) for r in mine) / len(mine)
        median = statistics.median(r.to_target for r in mine)
        lines.append(
            f"| {m} | {median:.1f}x | {reached:.0%} | {statistics.mean(r.trials for r in mine):.0f} | "
            f"{statistics.mean(r.seconds for r in mine):.1f} |"
        )
    lines += yardstick(runs, methods, max(args.budget_multiples))
    ours = [r for r in runs if r.method == OURS]
    if ours:
        lines += ["", "## The rule ours used", ""]
        lines.append(f"`search.stopping.make_scheduler`: {ours[0].rule.split(':', 1)[0]}.")
        lines += [
            "",
            "Rank correlation (Spearman) each rung measured against the next checkpoint, at the end "
            "of the search; mean over seeds per task:",
            "",
            "| task | " + " | ".join(f"epoch {e}" for e in sorted(ours[0].rho)) + " |",
            "|---|" + "---:|" * len(ours[0].rho),
        ]
        for task in args.tasks:
            rhos = [r.rho for r in ours if r.task == task]
            cells = [f"{statistics.mean(x[e] for x in rhos if e in x):+.2f}" for e in sorted(ours[0].rho)]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines += ["", "Its own report, for the first seed of each task:", ""]
        lines += [f"- {r.task}: {r.rule.split(': ', 1)[1]}" for r in ours if r.seed == 0]
    return lines


def yardstick(runs: list[Run], methods: list[str], final: float) -> list[str]:
    """How soon each method reached what random search ends with, on each task and seed."""
    random_end = {(r.task, r.seed): r.regret[-1] for r in runs if r.method == RANDOM}
    if not random_end:
        return []
    lines = [
        "",
        "## Time to random search's final regret",
        "",
        f"For each task and seed, the regret that {RANDOM!r} ended with at {final:g}x max_t, and the "
        "share of that budget each method took to reach it (its median over tasks x seeds; inf: "
        "not reached); the last column counts the runs that took a third of it or less.",
        "",
        "| method | median share of the budget | runs within 1/3 |",
        "|---|---:|---:|",
    ]
    for m in methods:
        shares = [time_to(r.steps, random_end[r.task, r.seed]) / final for r in runs if r.method == m]
        within = sum(s <= 1 / 3 for s in shares)
        lines.append(f"| {m} | {statistics.median(shares):.2f} | {within}/{len(shares)} |")
    return lines


def write_runs(path: Path, runs: list[Run], multiples: list[float]) -> Path:
    """Every run's figures, one row each, so a new summary needs no new simulation."""
    rows = [
        {
            "task": r.task,
            "seed": r.seed,
            "method": r.method,
            **{f"regret_{m:g}x": v for m, v in zip(multiples, r.regret, strict=True)},
            "to_target": r.to_target,
            "trials": r.trials,
            "seconds": round(r.seconds, 2),
            "steps": json.dumps([[round(b, 4), round(v, 6)] for b, v in r.steps]),
        }
        for r in sorted(runs, key=lambda r: (r.task, r.seed, METHODS.index(r.method)))
    ]
    # mtime 0: the same runs give the same bytes, so a rerun shows in git only if a figure moved.
    pd.DataFrame(rows).to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--workers", type=int, default=4, help="simulated workers")
    p.add_argument("--budget-multiples", type=float, nargs="+", default=[10, 30, 100])
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=METHODS, metavar="METHOD")
    p.add_argument("--processes", type=int, default=1, help="real worker processes")
    p.add_argument("--smoke", action="store_true", help="2 tasks x 2 seeds, budgets 3x and 10x: a test")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/yahpo")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache/hpsearch")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.tasks, args.seeds, args.budget_multiples = args.tasks[:2], min(args.seeds, 2), [3, 10]
    args.out = args.out or (SMOKE_OUT if args.smoke else OUT)  # a smoke run never overwrites the report
    if not (args.data_dir / "lcbench" / "model.onnx").is_file():
        raise UsageError(f"no LCBench surrogate at {args.data_dir}/lcbench (see --data-dir)")
    for package in ("yahpo_gym", "onnxruntime"):  # found, not imported: yahpo_gym's import reads settings
        if importlib.util.find_spec(package) is None:
            raise UsageError(f"{package} is not installed: pip install yahpo-gym onnxruntime")
    return args


def main(argv: list[str] | None = None) -> int:
    # Before yahpo_gym is imported anywhere: its settings file goes to the cache, not ~/.config.
    args = parse_args(argv)
    command = shlex.join(
        ["python", "benchmarks/simulated_search.py", *(sys.argv[1:] if argv is None else argv)]
    )
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YAHPO_LOCAL_CONFIG"] = str(args.cache_dir / "yahpo_local_config.yaml")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    jobs = [(t, s, m) for t in args.tasks for s in range(args.seeds) for m in args.methods]
    work = partial(
        one_run,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        workers=args.workers,
        multiples=args.budget_multiples,
    )
    started = time.perf_counter()
    runs = []
    with multiprocessing.get_context("spawn").Pool(args.processes, initializer=_quiet) as pool:
        for run in pool.imap_unordered(work, jobs):
            runs.append(run)
            regrets = " ".join(f"{r:.3f}" for r in run.regret)
            print(
                f"[{len(runs)}/{len(jobs)}] {run.task} seed {run.seed} {run.method}: regret {regrets}, "
                f"{run.trials} trials, {run.seconds:.1f} s",
                file=sys.stderr,
            )
    wall_s = time.perf_counter() - started
    title = "Simulated search on LCBench: ours against TPE, random, ASHA and Optuna's pruners"
    write_markdown(args.out, title, command, report(runs, args, wall_s))
    raw = write_runs(args.out.with_name(args.out.stem + "_runs.csv.gz"), runs, args.budget_multiples)
    print(f"wrote {args.out} and {raw} in {wall_s / 60:.1f} min", file=sys.stderr)
    return 0


def _quiet() -> None:
    # Each process: one thread for numpy and ONNX, no per-trial logs, no citation banner.
    os.environ["OMP_NUM_THREADS"] = "1"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (yahpo_gym prints a citation request)
    use_vectorised_log_ndtr()


def use_vectorised_log_ndtr() -> bool:
    """Give Optuna's TPE scipy's log of the normal CDF in place of its own; True if it could.

    Optuna computes log Phi(x) one element at a time in Python (its _truncnorm is a port of
    scipy's, so as not to depend on scipy), and that loop was most of this benchmark's real time.
    scipy.special.log_ndtr is the same function vectorised: the searches, and so every figure in
    the report, are unchanged (a test checks the two agree); only the benchmark's wall time falls.
    The search itself keeps Optuna as shipped: there a trial's training dwarfs TPE.
    """
    try:
        import scipy.special
        from optuna.samplers._tpe import _truncnorm
    except ImportError:  # Optuna moved its internals, or no scipy: run at Optuna's own speed
        return False
    if not callable(getattr(_truncnorm, "_log_ndtr", None)):
        return False
    _truncnorm._log_ndtr = scipy.special.log_ndtr
    return True


if __name__ == "__main__":
    run_main(main)
