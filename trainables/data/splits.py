"""The one in-memory form every dataset takes: uint8 images and int64 labels per split.

Images are ``[N, C, H, W]`` uint8 (a quarter of the memory of float32, and what the
training loop moves to the device whole); labels are int64 class indices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Split:
    x: torch.Tensor  # uint8 [N, C, H, W]
    y: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.shape != (self.x.shape[0],):
            raise ValueError(
                f"labels must be int64 [{self.x.shape[0]}], got {self.y.dtype} {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return self.y.shape[0]

    def take(self, index: torch.Tensor) -> Split:
        return Split(self.x[index], self.y[index])


@dataclass
class Splits:
    """Honest train/val/test splits of one dataset, with the class names in label order.

    ``source`` says in words where the data came from (the loader, its files, the options that
    shaped it), for a run's provenance; "" where nobody said. ``families``: where a loader splits
    by font family (val and test then measure unseen fonts), how many families each split's
    images come from; {} for other data.
    """

    train: Split
    val: Split
    test: Split
    classes: list[str]
    source: str = ""
    families: dict[str, int] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Splits:
        move = lambda s: Split(s.x.to(device), s.y.to(device))  # noqa: E731
        parts = move(self.train), move(self.val), move(self.test)
        return Splits(*parts, list(self.classes), self.source, dict(self.families))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {name: {"x": getattr(self, name).x, "y": getattr(self, name).y} for name in SPLIT_NAMES}
        payload["classes"] = list(self.classes)
        payload["source"] = self.source
        payload["families"] = dict(self.families)
        # Write then rename, so an interrupted prepare never leaves a half cache behind.
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Splits:
        payload = torch.load(path, weights_only=True)
        parts = {name: Split(payload[name]["x"], payload[name]["y"]) for name in SPLIT_NAMES}
        # (A cache of an older format has another CACHE_VERSION, so is never read: no fallbacks.)
        return cls(
            **parts,
            classes=list(payload["classes"]),
            source=payload["source"],
            families=dict(payload["families"]),
        )

    def digest(self) -> str:
        """sha256 of what a model sees: every split's image shape, image and label bytes, in split
        order, then the class names. Equal digests mean identical data; one pixel or one label
        changes it. ``source`` is not part of it (the same bytes from another folder are the same
        data). Under a second per GB of images."""
        h = hashlib.sha256()
        for name in SPLIT_NAMES:
            split = getattr(self, name)
            h.update(f"{name} {tuple(split.x.shape)}\n".encode())
            # numpy arrays hash in place (no copy of a dataset that may be most of memory).
            h.update(split.x.detach().cpu().contiguous().numpy())
            h.update(split.y.detach().cpu().contiguous().numpy())
        h.update("\n".join(self.classes).encode())
        return h.hexdigest()


def stratified_holdout(y: torch.Tensor, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices of ``y`` into (keep, holdout), the holdout drawn per class in proportion.

    Seeded, so the validation set is the same in every trial and every run: the search
    compares trials on one fixed set, and the test set stays untouched until the end.
    """
    if not 0 < holdout < len(y):
        raise ValueError(f"holdout must be between 1 and {len(y) - 1}, got {holdout}")
    gen = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    # Largest-remainder rounding, so the per-class quotas add up to exactly `holdout`.
    exact = counts.double() * holdout / len(y)
    quota = exact.floor().long()
    short = holdout - int(quota.sum())
    if short:
        quota[torch.argsort(exact - quota, descending=True, stable=True)[:short]] += 1
    keep, held = [], []
    for cls, q in zip(classes.tolist(), quota.tolist(), strict=True):
        idx = torch.nonzero(y == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        held.append(idx[:q])
        keep.append(idx[q:])
    return torch.sort(torch.cat(keep)).values, torch.sort(torch.cat(held)).values


def per_class_subset(split: Split, per_class: int, seed: int) -> Split:
    """At most ``per_class`` images of each class, drawn with a seed (for quick runs)."""
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for cls in torch.unique(split.y).tolist():
        idx = torch.nonzero(split.y == cls).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return split.take(torch.sort(torch.cat(keep)).values)
