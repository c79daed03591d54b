"""Train one configuration of a space: the seed's baseline, with any overrides.

    python search/train.py --space spaces/mnist.py --epochs 1 --gpus 0 --data-dir ../shared/data

Shows each epoch, evaluates the best epoch on the test split, and prints as its last line
a JSON object (task, val_acc, test_acc, epochs, train_time_s, n_params, stopped, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from search.cli import run_main
from search.space import load_space
from trainables.config import parse_assignments, resolve_config
from trainables.errors import UsageError
from trainables.loop import evaluate, pick_device, train
from trainables.models import count_params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="space file, e.g. spaces/font.py")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value (repeatable), e.g. --set lr=3e-3",
    )
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--gpus", type=float, default=1, help="0 trains on CPU; >0 uses the GPU if present")
    p.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="dataset root and cache (default ./data)"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where prepared datasets are kept (default ./data/cache; the data dir is only read)",
    )
    p.add_argument("--budget", type=float, help="training-time budget in seconds (default: the space's)")
    p.add_argument("--offline", action="store_true", help="never try to download a missing dataset")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.gpus < 0:
        raise UsageError(f"--gpus must not be negative, got {args.gpus}")
    if args.budget is not None and args.budget <= 0:
        raise UsageError(f"--budget must be positive, got {args.budget}")
    space = load_space(args.space)
    task = space.task
    overrides = parse_assignments(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config = resolve_config(task, space.baseline, overrides)
    device = pick_device(args.gpus)
    if args.gpus > 0 and device.type != "cuda":
        print("no GPU found: training on the CPU (pass --gpus 0 to say so)", file=sys.stderr)

    data = task.load(args.data_dir, cache_dir=args.cache_dir, download=not args.offline).to(device)
    budget = args.budget or space.budget_s
    print(
        f"{task.name}: {task.model} on {device.type}, {len(data.train):,} train / {len(data.val):,} val "
        f"/ {len(data.test):,} test images, up to {config['epochs']} epochs in {budget:.0f} s",
        file=sys.stderr,
    )

    def show(report: dict) -> None:
        print(
            f"epoch {report['epoch']:>3}/{config['epochs']}  train_loss {report['train_loss']:.4f}  "
            f"train_acc {report['train_acc']:.4f}  val_loss {report['val_loss']:.4f}  "
            f"val_acc {report['val_acc']:.4f}  {report['epoch_time_s']:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    result = train(task, config, data, device=device, budget_s=budget, on_epoch=show)
    test_loss, test_acc = evaluate(result.model, data.test, task)
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


if __name__ == "__main__":
    run_main(main)
