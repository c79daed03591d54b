"""Preparing a space's data once, on the driver, before any trial starts."""

from __future__ import annotations

from pathlib import Path

from hpsearch.search.space import Space
from hpsearch.trainables.data.font_split import check_families
from hpsearch.trainables.data.splits import Splits, per_class_subset


def load_space_data(
    space: Space,
    data_dir: Path,
    *,
    cache_dir: Path | None = None,
    quick: bool = False,
    download: bool = True,
    allow_small_split: bool = True,
) -> Splits:
    """The task's splits from the cache (built on first use); smaller under ``--quick``.

    Font data says how many font families each split holds; with ``allow_small_split=False`` (the
    commands' default, unless --allow-small-split) a val or test split of too few is a UsageError.
    """
    options = space.quick.get("dataset_options", {}) if quick else {}
    data = space.task.load(data_dir, cache_dir=cache_dir, download=download, **options)
    check_families(data, allow_small_split=allow_small_split)
    subsets = {k: space.quick[k] for k in ("train_per_class", "val_per_class") if quick and k in space.quick}
    if "train_per_class" in subsets:
        data.train = per_class_subset(data.train, subsets["train_per_class"], seed=0)
    if "val_per_class" in subsets:
        data.val = per_class_subset(data.val, subsets["val_per_class"], seed=0)
    if subsets:
        data.source += "; quick subset " + ", ".join(f"{k}={v}" for k, v in subsets.items())
    return data
