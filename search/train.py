"""Train one configuration and evaluate it on test: a space's seed baseline, or an exported config.

    python search/train.py --space spaces/mnist.py --epochs 1 --gpus 0 --data-dir ../shared/data
    python search/train.py --config exports/font-20261123-120000/best.yaml --seeds 3 [--train-on-val]

Shows each epoch, evaluates the best epoch on the test split, and prints as its last line
a JSON object (task, val_acc, test_acc, epochs, train_time_s, n_params, stopped, ...).
With --config (from search/export.py) each seed's retrain is logged to MLflow as a run tagged
`hpsearch.role=final` (beside the search's trials), and the last line has the test accuracy's
mean and standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from hpsearch.plumbing.cli import ArgumentParser, add_data_arguments, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.data import load_space_data
from hpsearch.search.exported import read_exported
from hpsearch.search.provenance import DataIdentity
from hpsearch.search.retrain import check_trained, load_export_data, retrain, warn_if_other_data
from hpsearch.search.space import load_space
from hpsearch.trainables.config import parse_assignments, resolve_config
from hpsearch.trainables.loop import outputs_as_trained, pick_device, train
from hpsearch.trainables.models import count_params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    p.add_argument(
        "--space",
        help="a space file or a built-in space's name (e.g. font): train its seed baseline (plus --set); "
        "with --config, the search's space file if its space is not a built-in one (an export never "
        "runs code it names)",
    )
    p.add_argument("--config", type=Path, help="an exported config (search/export.py) to retrain")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value (repeatable), e.g. --set lr=3e-3",
    )
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--gpus", type=float, default=1, help="0 trains on CPU; >0 uses the GPU if present")
    add_data_arguments(p)
    p.add_argument(
        "--trial-budget",
        type=float,
        metavar="SECONDS",
        help="each training run's time, its set-up and validation included (default: the space's BUDGET_S;"
        " with --config, the search's)",
    )
    p.add_argument("--budget", dest="trial_budget", type=float, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--offline", action="store_true", help="never try to download a missing dataset")
    p.add_argument(
        "--allow-small-split",
        action="store_true",
        help="with --space, font data: accept a val or test split of fewer than 5 font families"
        " (refused by default; an export's data was accepted by its search)",
    )
    g = p.add_argument_group("with --config")
    g.add_argument(
        "--seeds", type=int, default=1, help="retrain with N seeds, report mean +- std (default 1)"
    )
    g.add_argument(
        "--train-on-val", action="store_true", help="train on train+val, keep the last epoch's weights"
    )
    g.add_argument(
        "--full-data", action="store_true", help="the space's whole data even if the search was --quick"
    )
    g.add_argument(
        "--tracking-uri",
        help="MLflow store for the final runs (default: MLflow's own, sqlite:///mlflow.db here)",
    )
    g.add_argument("--no-mlflow", action="store_true", help="do not log the final runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.gpus < 0:
        raise UsageError(f"--gpus must not be negative, got {args.gpus}")
    if args.trial_budget is not None and args.trial_budget <= 0:
        raise UsageError(f"--trial-budget must be positive, got {args.trial_budget}")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.config is None and args.space is None:
        raise UsageError("pass --space FILE (train its baseline) or --config FILE (retrain an export)")
    if args.config is not None:
        return retrain_main(args)
    space = load_space(args.space)
    task = space.task
    overrides = parse_assignments(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config = resolve_config(task, space.baseline, overrides)
    device = pick_device(args.gpus)
    if args.gpus > 0 and device.type != "cuda":
        print("no GPU found: training on the CPU (pass --gpus 0 to say so)", file=sys.stderr)

    data = load_space_data(
        space,
        args.data_dir,
        cache_dir=args.cache_dir,
        download=not args.offline,
        allow_small_split=args.allow_small_split,
    ).to(device)
    budget = args.trial_budget or space.budget_s
    print(
        f"{task.name}: {task.model} on {device.type}, {len(data.train):,} train / {len(data.val):,} val "
        f"/ {len(data.test):,} test images, up to {config['epochs']} epochs in {budget:.0f} s",
        file=sys.stderr,
    )

    result = train(
        task, config, data, device=device, budget_s=budget, on_epoch=epoch_printer(config["epochs"])
    )
    check_trained(result)
    _, test_loss, test_acc = outputs_as_trained(result.model, data.test, task)
    summary = {
        "task": task.name,
        "val_acc": result.best_val_acc,
        "test_acc": test_acc,
        "test_loss": test_loss,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "train_time_s": round(result.train_time_s, 2),
        "n_params": count_params(result.model),
        "stopped": result.stopped,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "config": config,
    }
    print(json.dumps(summary))
    return 0


def retrain_main(args: argparse.Namespace) -> int:
    """--config: retrain an exported config with --seeds seeds, each evaluated on test."""
    exported = read_exported(args.config)
    overrides = parse_assignments(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    task, config = exported.resolved(overrides)  # a bad override fails before any data is read
    device = pick_device(args.gpus)
    if args.gpus > 0 and device.type != "cuda":
        print("no GPU found: training on the CPU (pass --gpus 0 to say so)", file=sys.stderr)
    data = load_export_data(
        exported,
        args.data_dir,
        cache_dir=args.cache_dir,
        download=not args.offline,
        full_data=args.full_data,
        space_file=args.space,
    )
    identity = DataIdentity.of(data)  # once for all seeds, on the CPU copy
    differs = warn_if_other_data(exported, identity)
    data = data.to(device)
    budget = args.trial_budget or exported.budget_s
    seeds = [config["seed"] + i for i in range(args.seeds)]
    value = f"{exported.metric} {exported.value:.4f}" if exported.value is not None else "no recorded value"
    print(
        f"{exported.name} of search {exported.search or '?'} ({value} there): {task.name} on {device.type}, "
        f"{len(data.train):,} train{' + val' if args.train_on_val else ''} / {len(data.test):,} test images, "
        f"seeds {seeds}, up to {config['epochs']} epochs in {budget:.0f} s each",
        file=sys.stderr,
    )
    runs = []
    for seed in seeds:
        run = retrain(
            exported,
            data,
            device=device,
            seed=seed,
            budget_s=budget,
            train_on_val=args.train_on_val,
            overrides=overrides,
            tracking_uri=args.tracking_uri,  # never the export's own: a shared file must not send runs
            track=not args.no_mlflow,
            on_epoch=epoch_printer(config["epochs"]),
            data_identity=identity,
        )
        print(f"seed {seed}: test_acc {run.test_acc:.4f}  test_loss {run.test_loss:.4f}", file=sys.stderr)
        runs.append(run)
    accs = [r.test_acc for r in runs]
    mean, std = statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"test accuracy {mean:.4f} +- {std:.4f} over {len(accs)} seed(s)", file=sys.stderr)
    summary = {
        "task": task.name,
        "config": str(args.config),
        "source_run": exported.run_id,
        "seeds": seeds,
        "test_acc": mean,
        "test_acc_std": std,
        "test_accs": accs,
        "val_acc": [r.result.best_val_acc for r in runs],
        "epochs": [len(r.result.history) for r in runs],
        "train_time_s": [round(r.result.train_time_s, 2) for r in runs],
        "train_on_val": args.train_on_val,
        "data_digest": identity.digest,
        "search_data_digest": exported.data_digest or None,  # None: the export recorded none
        "data_differs": differs,
        "mlflow_runs": [r.run_id for r in runs],
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }
    print(json.dumps(summary))
    return 0


def epoch_printer(epochs: int) -> Callable[[dict], None]:
    def show(report: dict) -> None:
        print(
            f"epoch {report['epoch']:>3}/{epochs}  train_loss {report['train_loss']:.4f}  "
            f"train_acc {report['train_acc']:.4f}  val_loss {report['val_loss']:.4f}  "
            f"val_acc {report['val_acc']:.4f}  {report['epoch_time_s']:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    return show


if __name__ == "__main__":
    run_main(main)
