"""Per-epoch training time of every task's seed baseline with our loop, on this machine.

    python benchmarks/epoch_time.py [--images 512] [--threads N] [--out reports/benchmarks/epoch_time.md]

Trains each space's BASELINE for one epoch on synthetic uint8 data of the task's shape
(throughput does not depend on pixel values), reports images/s, and from it the time one
epoch over the task's real training split would take. Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from hpsearch.benchmarks.machine import command_line, cpu_name, write_markdown
from hpsearch.search.space import load_space
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import pick_device, train

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

# Training-split sizes of the real datasets, after the validation hold-out.
TRAIN_SIZE = {
    "font": 52 * 716,
    "emnist": 697_932 - 20_000,
    "emnist_digit_letter": 697_932 - 20_000,
    "mnist": 60_000 - 5_000,
    "cifar10": 50_000 - 5_000,
    "cifar100": 50_000 - 5_000,
}


def synthetic(task, n: int, device: torch.device) -> Splits:
    gen = torch.Generator().manual_seed(0)
    split = lambda m: Split(  # noqa: E731
        torch.randint(0, 256, (m, *task.input_shape), generator=gen, dtype=torch.uint8),
        torch.randint(0, task.num_classes, (m,), generator=gen),
    )
    return Splits(split(n), split(64), split(64), [str(i) for i in range(task.num_classes)]).to(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512, help="synthetic training images per task (default 512)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--gpus", type=float, default=1, help="0 forces the CPU")
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/epoch_time.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.gpus)
    where = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{cpu_name()}, {args.threads} torch threads"
    )
    rows = []
    for path in sorted(Path("spaces").glob("*.py")):
        if path.name == "__init__.py":
            continue
        space = load_space(path)
        task = space.task
        config = resolve_config(task, space.baseline, {"epochs": 1})
        data = synthetic(task, args.images, device)
        result = train(task, config, data, device=device, budget_s=1e9)  # warm-up: allocator, kernels
        result = train(task, config, data, device=device, budget_s=1e9)
        per_s = args.images / result.history[0]["epoch_time_s"]
        epoch_s = TRAIN_SIZE[task.name] / per_s
        rows.append((task.name, task.model, result.n_params, config["batch_size"], per_s, epoch_s))
        print(f"{task.name:22s} {per_s:10.0f} img/s   one real epoch ~{epoch_s:8.0f} s", file=sys.stderr)
    body = [
        f"Device: {where}; {args.images} synthetic images per task, one epoch after a warm-up epoch "
        "(includes the validation pass over 64 images).",
        "",
        "| task | model | params | batch | images/s | one epoch of the real train split |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {t} | {m} | {n:,} | {b} | {r:,.0f} | {e:,.0f} s |" for t, m, n, b, r, e in rows],
    ]
    title = "Per-epoch time of each seed baseline (our training loop)"
    write_markdown(args.out, title, command_line(), body)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
