"""Plain Optuna, as a user without Ray runs it: worker processes sharing one journal storage.

Each worker runs ``study.optimize(objective, timeout=...)`` with Optuna's TPE at its defaults
(seeded) and Optuna's default pruner, ``MedianPruner()``. The objective trains with the
project's one training loop and reports every epoch to the pruner. The search-efficiency
benchmark starts the workers through ``run_plain_optuna``; one worker alone is

    python -m hpsearch.benchmarks.plain_optuna --run-dir DIR --space spaces/mnist.py --worker 0 --seed 0 \
        --deadline UNIX_TIME --trial-budget 120 --max-epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpsearch.benchmarks.efficiency_report import END, EPOCH, FAILED, PRUNED, START, Event
from hpsearch.search.space import Space, load_space
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import train

REPO = Path(__file__).resolve().parents[1]
STUDY_NAME, STUDY_FILE, DATA_FILE = "plain-optuna", "study.journal", "data.pt"


def storage(run_dir: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(run_dir / STUDY_FILE)))


def run_plain_optuna(
    space: Space,
    data: Splits,
    *,
    seed: int,
    workers: int,
    wall_s: float,
    trial_budget_s: float,
    max_epochs: int,
    run_dir: Path,
) -> list[Event]:
    """Run the workers for ``wall_s`` seconds from now; their events, on this clock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # The data file is the analogue of Ray's object store: written before the clock starts.
    Splits(data.train, data.val, Split(data.val.x[:0], data.val.y[:0]), data.classes).save(
        run_dir / DATA_FILE
    )
    origin = time.time()
    deadline = origin + wall_s
    direction = "maximize" if space.mode == "max" else "minimize"
    optuna.create_study(study_name=STUDY_NAME, storage=storage(run_dir), direction=direction)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for k in range(workers):
        argv = [sys.executable, "-m", "hpsearch.benchmarks.plain_optuna", "--run-dir", str(run_dir.resolve())]
        argv += ["--space", str(space.path.resolve()), "--worker", str(k), "--seed", str(seed)]
        argv += ["--deadline", repr(deadline), "--trial-budget", str(trial_budget_s)]
        argv += ["--max-epochs", str(max_epochs)]
        log = open(run_dir / f"worker-{k}.log", "w")  # noqa: SIM115 (closed when the worker ends)
        procs.append(
            (k, subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log)
        )
    for k, proc, log in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            # optimize()'s timeout starts no new trial but lets a running one finish; the wall
            # budget is the same for every method, so a trial still running at the deadline
            # is stopped here, as Tune's time_budget_s stops it in the other methods.
            proc.terminate()
            proc.wait()
        log.close()
        if proc.returncode not in (0, -signal.SIGTERM):
            tail = (run_dir / f"worker-{k}.log").read_text()[-2000:]
            raise RuntimeError(f"plain Optuna worker exited with {proc.returncode}:\n{tail}")
    return read_worker_events(run_dir, origin)


def read_worker_events(run_dir: Path, origin: float) -> list[Event]:
    events = []
    for path in sorted(run_dir.glob("events-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():  # a worker stopped mid-write leaves at most a partial last line
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                t_s = row.pop("t") - origin
                events.append(Event(t_s=t_s, **row))
    return events


def work(args: argparse.Namespace) -> None:
    """One worker: optimise the shared study until the deadline, logging each trial's events."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    data = Splits.load(args.run_dir / DATA_FILE)
    study = optuna.load_study(
        study_name=STUDY_NAME,
        storage=storage(args.run_dir),
        # A plain user's choices: the defaults, a seed per process (one seed in both would make
        # them propose the same random start-up trials).
        sampler=optuna.samplers.TPESampler(seed=1000 * args.seed + args.worker),
        pruner=optuna.pruners.MedianPruner(),
    )
    log = open(args.run_dir / f"events-{args.worker}.jsonl", "a", buffering=1)  # noqa: SIM115
    device = torch.device("cpu")

    def emit(**event) -> None:
        log.write(json.dumps({"t": time.time(), **event}) + "\n")

    def objective(trial: optuna.Trial) -> float:
        constants = space.suggest(trial) or {}  # define-by-run, as Ray's OptunaSearch calls it
        config = space.trial_config({**trial.params, **constants})
        config["epochs"] = min(config["epochs"], args.max_epochs)  # as search/trainable.py caps it
        emit(trial=trial.number, kind=START)

        def on_epoch(report: dict) -> None:
            emit(trial=trial.number, kind=EPOCH, epoch=report["epoch"], val_acc=report["val_acc"])
            trial.report(report["val_acc"], report["epoch"])
            # The last epoch is done whatever the pruner says: only a run that goes on is pruned.
            if not report["stopped"] and trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = train(
                space.task, config, data, device=device, budget_s=args.trial_budget, on_epoch=on_epoch
            )
        except optuna.TrialPruned:
            emit(trial=trial.number, kind=END, fate=PRUNED)
            raise
        except Exception:
            emit(trial=trial.number, kind=END, fate=FAILED)
            raise
        emit(trial=trial.number, kind=END, fate=result.stopped)
        # The last epoch's value, as Ray's OptunaSearch tells Optuna in the other two methods.
        return result.history[-1]["val_acc"]

    timeout = args.deadline - time.time()
    if timeout > 0:
        # A crashing trial is recorded as failed and the search goes on, as in the Ray searches.
        study.optimize(objective, timeout=timeout, catch=(Exception,))
    log.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, required=True, help="holds the study, the data and the events")
    p.add_argument("--space", required=True)
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--deadline", type=float, required=True, help="UNIX time after which no trial starts")
    p.add_argument("--trial-budget", type=float, required=True, help="training seconds per trial")
    p.add_argument("--max-epochs", type=int, required=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    work(parse_args())
