"""Preparing a space's data once, on the driver, before any trial starts."""

from __future__ import annotations

from pathlib import Path

from search.space import Space
from trainables.data.splits import Splits, per_class_subset


def load_space_data(
    space: Space, data_dir: Path, *, cache_dir: Path | None = None, quick: bool = False, download: bool = True
) -> Splits:
    """The task's splits from the cache (built on first use); smaller under ``--quick``."""
    options = space.quick.get("dataset_options", {}) if quick else {}
    data = space.task.load(data_dir, cache_dir=cache_dir, download=download, **options)
    if quick and "train_per_class" in space.quick:
        data.train = per_class_subset(data.train, space.quick["train_per_class"], seed=0)
    if quick and "val_per_class" in space.quick:
        data.val = per_class_subset(data.val, space.quick["val_per_class"], seed=0)
    return data
