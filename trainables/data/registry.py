"""Datasets by name, and preparing each once into a uint8 tensor cache.

A loader is ``load(root, *, work_dir, download, seed, **options) -> Splits``; it returns
honest train/val/test splits (holding a seeded validation set out of train where the
dataset has none). It only reads ``root`` (a user's data, maybe a read-only or shared
folder); whatever it makes (downloads, unpacked archives, generated images' manifests) goes
in ``work_dir``. ``prepare`` runs it once and keeps the result in the cache dir, so every
later run (and every trial of a search) reads one file instead of decoding the dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.splits import Splits

DatasetLoader = Callable[..., Splits]
DATASETS: dict[str, DatasetLoader] = {}

# Bump when a loader's output changes for the same options, so old caches are not reused.
CACHE_VERSION = 3  # 3: font data from the pinned font bundle; Splits keep their families
DEFAULT_CACHE_DIR = Path("data") / "cache"


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    def add(loader: DatasetLoader) -> DatasetLoader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = loader
        return loader

    return add


def cache_path(cache_dir: Path, root: Path, dataset: str, seed: int, options: dict) -> Path:
    key = json.dumps(
        {"v": CACHE_VERSION, "root": str(Path(root).resolve()), "seed": seed, **options},
        sort_keys=True,
        default=str,
    )
    return Path(cache_dir) / f"{dataset}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


def prepare(
    dataset: str,
    root: Path,
    *,
    cache_dir: Path | None = None,
    download: bool = True,
    seed: int = 0,
    **options,
) -> Splits:
    """Load ``dataset`` from its cache, building the cache first if it is not there yet."""
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    if cache_dir.exists() and not cache_dir.is_dir():
        raise UsageError(f"the cache dir {cache_dir} is a file; pass --cache-dir a directory")
    path = cache_path(cache_dir, root, dataset, seed, options)
    if path.exists():  # before importing the loaders: torchvision alone costs ~1.5 s
        return Splits.load(path)
    _import_loaders()
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    splits = DATASETS[dataset](
        Path(root), work_dir=cache_dir / "work", download=download, seed=seed, **options
    )
    splits.source = describe(splits.source or f"{dataset} from {root}", seed, options)
    splits.save(path)
    return splits


def describe(what: str, seed: int, options: dict) -> str:
    """A loader's own words for its data, with the options that shaped it: 'mnist (torchvision)
    from data [val_size=5000, seed=0]'."""
    knobs = [f"{k}={v}" for k, v in sorted(options.items())] + [f"seed={seed}"]
    return f"{what} [{', '.join(knobs)}]"


def _import_loaders() -> None:
    # The loader modules register themselves on import; importing them here (not at the top)
    # keeps `import trainables.data.registry` free of torchvision and PIL for the trainable.
    from hpsearch.trainables.data import font, torchvision_sets  # noqa: F401
