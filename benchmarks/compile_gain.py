"""What torch.compile buys each seed baseline on a GPU, and whether it pays inside a trial.

    python benchmarks/compile_gain.py [--tasks mnist,cifar10] [--images N] [--trial-s 600]
                                      [--out reports/benchmarks/compile_gpu.md]

For each task's seed baseline, our loop (`trainables.loop.train`) for two epochs on the same
synthetic images, eager and compiled (`compile_mode="on"`): images/s of the second epoch, and the
compiling warm-up's seconds. Compiling pays for a model family when the training time it saves
in a trial of ``--trial-s`` seconds (the 10-minute rule) is more than the compilation costs:
those families belong in `trainables.compiled.PAYS_ON_CUDA`, which `--compile auto` reads.
It needs a CUDA GPU (`bash benchmarks/gpu_check.sh` runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import torch

from hpsearch.benchmarks.epoch_time import synthetic
from hpsearch.benchmarks.machine import command_line, write_markdown
from hpsearch.benchmarks.throughput import VAL_IMAGES, default_images, describe_device, pick_spaces
from hpsearch.plumbing.cli import run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.space import Space
from hpsearch.trainables.loop import train

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

TRIAL_S = 600.0  # the 10-minute rule


@dataclasses.dataclass
class Gain:
    task: str
    model: str
    eager_per_s: float
    compiled_per_s: float
    compile_s: float | None  # None: compilation failed and the run trained eagerly

    def break_even_s(self) -> float:
        """The trial length from which compiling saves more than it cost (inf: never)."""
        return break_even_s(self.eager_per_s, self.compiled_per_s, self.compile_s)

    def cells(self, trial_s: float) -> list[str]:
        pays = self.break_even_s() < trial_s
        return [
            self.task,
            self.model,
            f"{self.eager_per_s:,.0f}",
            f"{self.compiled_per_s:,.0f}",
            f"{self.compiled_per_s / self.eager_per_s:.2f}x",
            "failed" if self.compile_s is None else f"{self.compile_s:.1f}",
            f"{self.break_even_s():.0f}" if math.isfinite(self.break_even_s()) else "never",
            "yes" if pays else "no",
        ]


HEADER = ["task", "model", "eager img/s", "compiled img/s", "speed-up", "compile s", "pays from s", "pays"]


def break_even_s(eager_per_s: float, compiled_per_s: float, compile_s: float | None) -> float:
    """Seconds of training after which a compiled run has trained more images than an eager one.

    In ``t`` seconds the eager run trains ``eager * t`` images, the compiled one
    ``compiled * (t - compile_s)``: equal at ``t = compiled * compile_s / (compiled - eager)``.
    """
    if compile_s is None or compiled_per_s <= eager_per_s:
        return math.inf
    return compiled_per_s * compile_s / (compiled_per_s - eager_per_s)


def measure(space: Space, images: int, device: torch.device) -> Gain:
    task, config = space.task, space.baseline
    data = synthetic(task, images, torch.device("cpu"))
    tiny_val = torch.arange(VAL_IMAGES)
    data = dataclasses.replace(data, val=data.val.take(tiny_val), test=data.test.take(tiny_val)).to(device)
    per_s, compile_s = {}, None
    for mode in ("off", "on"):
        result = train(task, {**config, "epochs": 2}, data, device=device, budget_s=1e9, compile_mode=mode)
        per_s[mode] = len(data.train) / result.history[1]["epoch_time_s"]
        if mode == "on":
            compile_s = result.compile_s
    return Gain(task.name, task.model, per_s["off"], per_s["on"], compile_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", help="comma-separated task names (default: every space in spaces/)")
    p.add_argument("--images", type=int, help="synthetic training images per task (default: a real epoch)")
    p.add_argument("--trial-s", type=float, default=TRIAL_S, help="the trial length it must pay within")
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/compile_gpu.md"))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise UsageError("compile_gain.py measures torch.compile on a GPU, and this machine has no CUDA GPU")
    spaces = pick_spaces(args.tasks, p)
    device = torch.device("cuda")
    _, where, _ = describe_device(device, torch.get_num_threads(), None)
    print(" | ".join(HEADER), file=sys.stderr)
    gains = []
    for space in spaces:
        gains.append(measure(space, args.images or default_images(space.task, device), device))
        print(" | ".join(gains[-1].cells(args.trial_s)), file=sys.stderr)
    paying = sorted({g.model for g in gains if g.break_even_s() < args.trial_s})
    body = [
        f"Device: {where}. Each task's seed baseline, two epochs of our loop on synthetic images, "
        "eager and compiled (`torch.compile`, default mode, after a warm-up that compiles the "
        "training and the evaluation graphs); images/s of the second epoch. **pays from s**: the "
        "trial length from which the compiled run has trained more images, its compilation included.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|---|---|" + "---:|" * (len(HEADER) - 2),
        *("| " + " | ".join(g.cells(args.trial_s)) + " |" for g in gains),
        "",
        f"Families for which compiling pays within {args.trial_s:.0f} s: "
        f"{', '.join(paying) or 'none'} (`trainables.compiled.PAYS_ON_CUDA`).",
    ]
    title = "torch.compile on a GPU: what it buys each seed baseline"
    print(f"wrote {write_markdown(args.out, title, command_line(argv), body)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
