"""Training throughput of each seed baseline: our loop against the seeds' DataLoader way, in one run.

    python benchmarks/throughput.py [--tasks mnist,cifar10] [--images N] [--workers 2] [--gpus 1]
                                    [--threads N] [--out reports/benchmarks/throughput.md] [--smoke]

For each task's seed baseline (its space's BASELINE: model, optimizer, batch size), one epoch after
a warm-up epoch on the same synthetic uint8 images of the task's shape, two ways:

- ours: `trainables.loop.train`; the data on the device whole, batches normalised and augmented
  there; bf16 autocast and channels_last on CUDA.
- the seeds' way (typical course code): a torchvision Dataset that makes a PIL image per sample and
  runs per-sample transforms (the baseline's augmentation as torchvision transforms, ToTensor,
  Normalize), a shuffling DataLoader with worker processes (pin_memory on CUDA), fp32,
  `.to(device)` and `loss.item()` per batch.

Reports images/s of both and their ratio, model FLOPs per image and the FLOP/s each way achieves,
and on CUDA the fraction of the GPU's dense bf16 peak: how close each way gets to the physical limit.
Both ways run in the same process on the same machine, so compare ratios across machines, not
absolute figures. Default images per task: on the CPU sized for a few seconds per epoch on 2 cores
(fewer for the slow 90x90 font and the deep CIFAR-100 CNN), on CUDA a real epoch (capped at 50,000).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms
from torchvision.datasets import VisionDataset

from hpsearch.benchmarks.epoch_time import TRAIN_SIZE, synthetic
from hpsearch.benchmarks.machine import command_line, cpu_name, write_markdown
from hpsearch.search.space import Space, load_space
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import pick_device, train
from hpsearch.trainables.models import MODELS, build_model, count_params
from hpsearch.trainables.optim import build_optimizer
from hpsearch.trainables.tasks import Task

# What this script measures and how; bump it when that changes (benchmarks/machine.py).
MEASUREMENT_VERSION = 1

SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"
# Images per task on the CPU: about 5-8 s per epoch at the rates in reports/benchmarks/epoch_time.md,
# long enough that the DataLoader's worker start-up (paid every epoch) weighs as little as in a real
# epoch; the whole default run takes a few minutes on 2 cores.
CPU_IMAGES = {
    "font": 512,
    "cifar100": 512,
    "cifar10": 2048,
    "emnist": 2048,
    "emnist_digit_letter": 4096,
    "mnist": 4096,
}
CUDA_MAX_IMAGES = 50_000
VAL_IMAGES = 8  # our loop's epoch time includes a validation pass: keep it negligible
SMOKE_TASKS, SMOKE_IMAGES = "mnist,cifar10", 32  # a grey and a colour task: both PIL paths
# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s; the first name found in the GPU's name wins.
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
)


@dataclasses.dataclass
class Row:
    task: str
    model: str
    params: int
    batch: int
    images: int
    flops_per_image: float  # forward only
    ours_per_s: float
    seeds_per_s: float

    def cells(self, peak: float | None) -> list[str]:
        ours_tflops, seeds_tflops = (
            train_flops(self.flops_per_image, r) for r in (self.ours_per_s, self.seeds_per_s)
        )
        pct = lambda f: "n/a" if peak is None else f"{100 * f * 1e12 / peak:.2f}%"  # noqa: E731
        return [
            self.task,
            self.model,
            f"{self.params:,}",
            str(self.batch),
            f"{self.images:,}",
            f"{self.flops_per_image / 1e9:.4f}",
            f"{self.ours_per_s:,.0f}",
            f"{self.seeds_per_s:,.0f}",
            f"{self.ours_per_s / self.seeds_per_s:.2f}x",
            f"{ours_tflops:.3g}",
            f"{seeds_tflops:.3g}",
            pct(ours_tflops),
            pct(seeds_tflops),
        ]


HEADER = [
    "task",
    "model",
    "params",
    "batch",
    "images",
    "GFLOP/img (fwd)",
    "ours img/s",
    "DataLoader img/s",
    "ratio (ours/DataLoader)",
    "ours TFLOP/s",
    "DataLoader TFLOP/s",
    "ours % of peak",
    "DataLoader % of peak",
]


def train_flops(flops_per_image: float, images_per_s: float) -> float:
    """Achieved TFLOP/s of training: a step (forward, backward for inputs and weights) ~ 3x the forward."""
    return 3 * flops_per_image * images_per_s / 1e12


def peak_flops(gpu_name: str) -> float | None:
    """The dense bf16 peak FLOP/s of a GPU by name, or None for a GPU not in the table."""
    for name, peak in PEAK_BF16:
        if name.lower() in gpu_name.lower():
            return peak
    return None


@contextmanager
def _no_mkldnn() -> Iterator[None]:
    # oneDNN runs an LSTM as one opaque op the counter has no formula for; without it the LSTM
    # runs as the matmuls it is made of, and those are counted.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def forward_flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Forward FLOPs per image (matmuls and convolutions), counted on the CPU.

    Counted on the CPU whatever the training device: FLOPs do not depend on it, and cuDNN's RNN
    is also an op the counter cannot see into. Two images: the models' cost is linear in the batch.
    """
    model = model.to("cpu").eval()
    with _no_mkldnn(), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(2, *input_shape))
    return counter.get_total_flops() / 2


def seed_transform(task: Task, augment: str) -> transforms.Compose:
    """The baseline's augmentation and normalisation as the seeds wrote them: per-sample on PIL images."""
    size = task.input_shape[-1]
    augmentation = {
        "none": [],
        "flip": [transforms.RandomHorizontalFlip()],
        "flip_crop": [transforms.RandomHorizontalFlip(), transforms.RandomCrop(size, padding=4)],
        "affine": [transforms.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1))],
    }
    if augment not in augmentation:
        raise ValueError(f"no per-sample equivalent of augmentation {augment!r}")
    return transforms.Compose(
        [*augmentation[augment], transforms.ToTensor(), transforms.Normalize(task.mean, task.std)]
    )


class SeedDataset(VisionDataset):
    """Images kept as torchvision's MNIST and CIFAR keep them (uint8, HWC); a PIL image per sample."""

    def __init__(self, split: Split, transform: Any) -> None:
        super().__init__(root=None, transform=transform)
        self.images = split.x.cpu().permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = split.y.cpu().tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)  # mode L or RGB
        return self.transform(image), self.labels[index]


def seed_loader(
    task: Task, config: dict[str, Any], split: Split, device: torch.device, workers: int
) -> DataLoader:
    batch_size = config["batch_size"]
    return DataLoader(
        SeedDataset(split, seed_transform(task, config["augment"])),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        # A last batch of one breaks BatchNorm in training; our loop drops it too.
        drop_last=len(split) % batch_size == 1,
    )


def seed_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    device: torch.device,
) -> tuple[int, float]:
    """One epoch as course code writes it; returns (images trained, mean loss)."""
    model.train()
    seen, running_loss, correct = 0, 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        # Running loss and accuracy read back per batch, as course code does: a host sync per batch.
        running_loss += loss.item() * len(labels)
        correct += (outputs.argmax(1) == labels).sum().item()
        seen += len(labels)
    return seen, running_loss / seen


def seeds_way(task: Task, config: dict[str, Any], split: Split, device: torch.device, workers: int) -> float:
    """Images/s of the seeds' way: one epoch timed after a warm-up epoch."""
    torch.manual_seed(config["seed"])  # the same initial weights as our loop's model
    model = build_model(task.model, task.num_classes, task.input_shape, **model_knobs(task, config))
    model = model.to(device)
    optimizer = build_optimizer(model, config)
    criterion = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    loader = seed_loader(task, config, split, device, workers)
    seed_epoch(model, loader, optimizer, criterion, device)
    _sync(device)
    start = time.perf_counter()
    seen, _ = seed_epoch(model, loader, optimizer, criterion, device)
    _sync(device)
    return seen / (time.perf_counter() - start)


def our_way(task: Task, config: dict[str, Any], data: Splits, device: torch.device) -> float:
    """Images/s of our loop: its second epoch's time (the first is the warm-up)."""
    result = train(task, {**config, "epochs": 2}, data, device=device, budget_s=1e9)
    n, batch_size = len(data.train), config["batch_size"]
    seen = n - (n % batch_size == 1)  # the loop drops a straggler batch of one
    return seen / result.history[1]["epoch_time_s"]


def model_knobs(task: Task, config: dict[str, Any]) -> dict[str, Any]:
    # A resolved config holds every knob of the task's model family, as the loop reads them.
    return {k: config[k] for k in MODELS[task.model].defaults}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(space: Space, images: int, device: torch.device, workers: int) -> Row:
    task = space.task
    config = space.baseline
    model = build_model(task.model, task.num_classes, task.input_shape, **model_knobs(task, config))
    cpu_data = synthetic(task, images, torch.device("cpu"))
    tiny_val = torch.arange(VAL_IMAGES)
    cpu_data = dataclasses.replace(
        cpu_data, val=cpu_data.val.take(tiny_val), test=cpu_data.test.take(tiny_val)
    )
    ours = our_way(task, config, cpu_data.to(device), device)
    seeds = seeds_way(task, config, cpu_data.train, device, workers)
    return Row(
        task.name,
        task.model,
        count_params(model),
        config["batch_size"],
        images,
        forward_flops_per_image(model, task.input_shape),
        ours,
        seeds,
    )


def default_images(task: Task, device: torch.device) -> int:
    if device.type == "cuda":
        return min(TRAIN_SIZE.get(task.name, CUDA_MAX_IMAGES), CUDA_MAX_IMAGES)
    return CPU_IMAGES.get(task.name, 512)


def pick_spaces(names: str | None, parser: argparse.ArgumentParser) -> list[Space]:
    paths = [path for path in sorted(SPACES_DIR.glob("*.py")) if path.name != "__init__.py"]
    spaces = {s.task.name: s for s in map(load_space, paths)}
    if names is None:
        return list(spaces.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in spaces]
    if unknown or not wanted:
        parser.error(f"unknown task(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(spaces)}")
    return [spaces[n] for n in wanted]


def describe_device(
    device: torch.device, threads: int, peak_tflops: float | None
) -> tuple[float | None, str, str]:
    """(peak FLOP/s or None, where it ran, how the peak fraction was taken) for the report."""
    if device.type != "cuda":
        return None, f"CPU: {cpu_name()}, torch threads: {threads}", "n/a on the CPU"
    gpu = torch.cuda.get_device_name()
    peak = peak_tflops * 1e12 if peak_tflops else peak_flops(gpu)
    if peak is None:
        return None, gpu, "n/a: no peak known for this GPU (give one with --peak-tflops)"
    given = " (given with --peak-tflops)" if peak_tflops else ""
    note = (
        f"of the {gpu}'s dense bf16 tensor-core peak, {peak / 1e12:,.0f} TFLOP/s{given}; both ways "
        "against that peak, though the DataLoader way runs fp32 (as the seeds did)"
    )
    return peak, f"{gpu}, torch CPU threads: {threads}", note


def _table_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", help="comma-separated task names (default: every space in spaces/)")
    p.add_argument("--images", type=int, help="synthetic training images per task (default: per task, above)")
    p.add_argument("--workers", type=int, default=2, help="the seeds' DataLoader workers (default 2)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--gpus", type=float, default=1, help="0 forces the CPU")
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for a GPU not in the table")
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/throughput.md"))
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"a tiny run for the tests ({SMOKE_TASKS}, {SMOKE_IMAGES} images)",
    )
    args = p.parse_args(argv)
    if args.images is not None and args.images < 2:
        p.error("--images must be at least 2")
    if args.workers < 0 or args.threads < 1:
        p.error("--workers must be >= 0 and --threads >= 1")
    if args.smoke:
        args.tasks, args.images = args.tasks or SMOKE_TASKS, args.images or SMOKE_IMAGES
    spaces = pick_spaces(args.tasks, p)
    torch.set_num_threads(args.threads)
    device = pick_device(args.gpus)
    peak, where, peak_note = describe_device(device, args.threads, args.peak_tflops)

    print(_table_line(HEADER), file=sys.stderr)
    rows = []
    for space in spaces:
        row = measure(space, args.images or default_images(space.task, device), device, args.workers)
        rows.append(row)
        print(_table_line(row.cells(peak)), file=sys.stderr)

    body = [
        f"Device: {where}. Each task's seed baseline (its space's BASELINE: model, optimizer, batch size), "
        "one epoch timed after a warm-up epoch, on the same synthetic uint8 images of the task's shape "
        "(throughput does not depend on pixel values); both ways measured in this one run.",
        "",
        "- **ours**: `trainables.loop.train` (data on the device whole, batched normalisation and "
        "augmentation there; bf16 autocast and channels_last on CUDA). Its epoch time includes a "
        f"validation pass over {VAL_IMAGES} images, which counts against ours.",
        "- **DataLoader**: the seeds' way: a torchvision Dataset making a PIL image per sample with "
        "per-sample transforms (the baseline's augmentation as torchvision transforms, ToTensor, "
        f"Normalize), `DataLoader(shuffle=True, num_workers={args.workers}, "
        f"pin_memory={device.type == 'cuda'})`, fp32, `.to(device)` and `loss.item()` per batch; "
        "same model, initial weights, optimizer and loss.",
        "- **GFLOP/img**: forward FLOPs per image (convolutions and matmuls, the LSTM's included) by "
        "`torch.utils.flop_counter.FlopCounterMode`; a training step is taken as 3x the forward, so "
        "TFLOP/s = 3 x FLOP/img x img/s.",
        f"- **% of peak**: {peak_note}.",
        "",
        _table_line(HEADER),
        "|---|---|" + "---:|" * (len(HEADER) - 2),
        *(_table_line(r.cells(peak)) for r in rows),
    ]
    ratios = [r.ours_per_s / r.seeds_per_s for r in rows]
    geo_mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    body += ["", f"Geometric mean of the ratios (ours/DataLoader): {geo_mean:.2f}x."]
    title = "Training throughput: our loop vs the seeds' DataLoader way"
    out = write_markdown(args.out, title, command_line(argv), body)
    print(f"wrote {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
