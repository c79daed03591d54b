"""The MNIST seed's CNN: 3x3 convs, each followed by the mean of max- and avg-pooling."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hpsearch.trainables.models.registry import register_model


class MixedPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.max_pool2d(x, 2) + F.avg_pool2d(x, 2))


@register_model("mnist_cnn", channels=32, fc1=1024, fc2=512, dropout=0.5, leaky_slope=0.01)
def mnist_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    channels: int,  # first conv's filters; the next two double it (seed: 32, 64, 128)
    fc1: int,
    fc2: int,
    dropout: float,
    leaky_slope: float,
) -> nn.Module:
    widths = [channels, 2 * channels, 4 * channels]
    layers: list[nn.Module] = []
    c_in, side = input_shape[0], input_shape[1]
    for w in widths:
        layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.ReLU(inplace=True), MixedPool()]
        c_in, side = w, side // 2
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(c_in * side * side, fc1),
        nn.LeakyReLU(leaky_slope, inplace=True),
        nn.Dropout(dropout),
        nn.Linear(fc1, fc2),
        nn.LeakyReLU(leaky_slope, inplace=True),
        nn.Dropout(dropout),
        nn.Linear(fc2, num_classes),
    )
