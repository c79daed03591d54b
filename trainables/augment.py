"""Batched augmentation on the device: one random affine warp per batch, no per-sample Python.

Works on float images scaled to 0..1 before normalisation, so the zero padding that a
shift or rotation brings in is the background (black) of every task's data.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

AUGMENTATIONS = ("none", "flip", "flip_crop", "affine")


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "flip":
        return random_flip(x, gen)
    if kind == "flip_crop":
        # The classic CIFAR recipe: flip, then a random crop of a 4-pixel zero-padded image.
        return random_warp(random_flip(x, gen), gen, max_shift_px=4, mode="nearest")
    if kind == "affine":
        # Small rotation, scale and shift: printed or written glyphs vary this much.
        return random_warp(x, gen, max_rotate_deg=8.0, max_scale=0.1, max_shift_px=x.shape[-1] * 0.08)
    raise ValueError(f"unknown augmentation {kind!r}; known: {', '.join(AUGMENTATIONS)}")


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_warp(
    x: torch.Tensor,
    gen: torch.Generator,
    *,
    max_rotate_deg: float = 0.0,
    max_scale: float = 0.0,
    max_shift_px: float = 0.0,
    mode: str = "bilinear",
) -> torch.Tensor:
    n, _, h, w = x.shape
    u = torch.rand(n, 4, device=x.device, generator=gen) * 2 - 1  # uniform in [-1, 1)
    angle = u[:, 0] * math.radians(max_rotate_deg)
    scale = 1 + u[:, 1] * max_scale
    if mode == "nearest":  # whole-pixel shifts, as a padded random crop would give
        shift_x, shift_y = (u[:, 2] * max_shift_px).round() * 2 / w, (u[:, 3] * max_shift_px).round() * 2 / h
    else:
        shift_x, shift_y = u[:, 2] * max_shift_px * 2 / w, u[:, 3] * max_shift_px * 2 / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
