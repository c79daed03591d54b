"""The seed tasks by name: which dataset, classes, input shape, model family and normalisation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.splits import Split, Splits


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str  # a name in trainables.data.registry.DATASETS
    num_classes: int
    input_shape: tuple[int, int, int]  # C, H, W
    model: str  # a name in trainables.models.MODELS
    mean: tuple[float, ...]  # per channel, on the 0..1 scale
    std: tuple[float, ...]
    augmentations: tuple[str, ...]  # what makes sense for this data (see trainables.augment)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    relabel: Callable[[Splits], Splits] | None = None  # e.g. 47 EMNIST classes -> digit/letter

    def load(
        self,
        data_dir: Path,
        *,
        cache_dir: Path | None = None,
        download: bool = True,
        seed: int = 0,
        **options: Any,
    ) -> Splits:
        """The task's data, from the cache (built on first use from ``data_dir``)."""
        from hpsearch.trainables.data.registry import prepare

        splits = prepare(
            self.dataset,
            Path(data_dir),
            cache_dir=cache_dir,
            download=download,
            seed=seed,
            **{**self.dataset_options, **options},
        )
        if self.relabel is None:
            return splits
        relabelled = self.relabel(splits)
        relabelled.source = f"{splits.source}, relabelled by {self.relabel.__name__}"
        return relabelled


def digit_or_letter(splits: Splits) -> Splits:
    # EMNIST bymerge puts the ten digits first (labels 0-9), the letters after them.
    to_binary = lambda s: Split(s.x, (s.y >= 10).long())  # noqa: E731
    return Splits(to_binary(splits.train), to_binary(splits.val), to_binary(splits.test), ["digit", "letter"])


GRAY_AUG = ("none", "affine")
COLOR_AUG = ("none", "flip", "flip_crop")
MNIST_NORM = dict(mean=(0.1307,), std=(0.3081,))
# Sizes of the seeded validation sets held out of train where a dataset has none.
VAL_SIZE = {"mnist": 5_000, "emnist": 20_000, "cifar10": 5_000, "cifar100": 5_000}

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("font", "font", 52, (1, 90, 90), "font_cnn", (0.5,), (0.5,), GRAY_AUG),
        Task(
            "emnist",
            "emnist",
            47,
            (1, 28, 28),
            "row_lstm",
            **MNIST_NORM,
            augmentations=GRAY_AUG,
            dataset_options={"val_size": VAL_SIZE["emnist"]},
        ),
        Task(
            "emnist_digit_letter",
            "emnist",
            2,
            (1, 28, 28),
            "row_lstm",
            **MNIST_NORM,
            augmentations=GRAY_AUG,
            dataset_options={"val_size": VAL_SIZE["emnist"]},
            relabel=digit_or_letter,
        ),
        Task(
            "mnist",
            "mnist",
            10,
            (1, 28, 28),
            "mnist_cnn",
            **MNIST_NORM,
            augmentations=GRAY_AUG,
            dataset_options={"val_size": VAL_SIZE["mnist"]},
        ),
        # The CIFAR-100 seed normalises with 0.5/0.5; CIFAR-10 uses the usual channel statistics.
        Task(
            "cifar10",
            "cifar10",
            10,
            (3, 32, 32),
            "cifar10_cnn",
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
            COLOR_AUG,
            {"val_size": VAL_SIZE["cifar10"]},
        ),
        Task(
            "cifar100",
            "cifar100",
            100,
            (3, 32, 32),
            "cifar_bn_cnn",
            (0.5, 0.5, 0.5),
            (0.5, 0.5, 0.5),
            COLOR_AUG,
            {"val_size": VAL_SIZE["cifar100"]},
        ),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def normalise(x: torch.Tensor, task: Task) -> torch.Tensor:
    """uint8-scaled floats (0..1) to the task's normalised inputs."""
    # While traced (torch.export, which mlflow.pytorch.log_model runs; torch.compile) the
    # constants are made afresh, in the graph: made under the tracer's fake mode they are fake
    # tensors, and cached they would poison the process. Every later run on that device and
    # dtype then trained on fake constants (symbolic losses: "Could not guard on data-dependent
    # expression"), and the next export failed ("a fake tensor ... lifted_tensor_0").
    constants = _make_constants if torch.compiler.is_compiling() else _constants
    mean, std = constants(task.mean, task.std, x.device, x.dtype)
    return (x - mean) / std


def _make_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, -1, 1, 1)
    return (
        torch.tensor(mean, device=device, dtype=dtype).view(shape),
        torch.tensor(std, device=device, dtype=dtype).view(shape),
    )


# Built once per device and dtype: a tensor made from a Python list in the batch loop is a
# host-to-device copy, and on CUDA a sync, for every batch.
_constants = functools.lru_cache(maxsize=64)(_make_constants)
