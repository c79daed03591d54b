"""The CIFAR seeds' plain conv-BN-ReLU networks.

``cifar_bn_cnn`` is the CIFAR-100 seed's family (6 or 10 conv layers, a base width: 32 by
default, 64 for the seed's "size 64"); the seed gives depth and width only, so the stage
layout (widths doubling after each 2x2 max-pool, global average pool, one linear head) is
our reconstruction. ``cifar10_cnn`` is the CIFAR-10 seed's exact stack, ending in a
linear layer followed by BatchNorm1d.
"""

from __future__ import annotations

from torch import nn

from hpsearch.trainables.models.registry import register_model

# Convs per stage; a 2x2 max-pool follows each stage and the width doubles.
STAGE_LAYOUTS = {6: (2, 2, 2), 10: (2, 2, 3, 3)}


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm right after it has its own.
    return [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


@register_model("cifar_bn_cnn", depth=10, width=64, kernel=3, dropout=0.0)
def cifar_bn_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    depth: int,
    width: int,
    kernel: int,
    dropout: float,
) -> nn.Module:
    if depth not in STAGE_LAYOUTS:
        raise ValueError(f"depth must be one of {sorted(STAGE_LAYOUTS)}, got {depth}")
    layers: list[nn.Module] = []
    c_in = input_shape[0]
    for stage, n_convs in enumerate(STAGE_LAYOUTS[depth]):
        c_out = width * 2**stage
        for _ in range(n_convs):
            layers += conv_bn_relu(c_in, c_out, kernel)
            c_in = c_out
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
    )


@register_model(
    "cifar10_cnn", conv1_channels=64, conv1_kernel=5, mid_channels=32, last_channels=16, dropout=0.0
)
def cifar10_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    conv1_channels: int,
    conv1_kernel: int,
    mid_channels: int,
    last_channels: int,
    dropout: float,
) -> nn.Module:
    # Seed: 5x5x64, 3x3x32, 3x3x32, pool, 3x3x32, 3x3x16, 3x3x16, pool, linear, BatchNorm1d.
    plan = [
        (conv1_channels, conv1_kernel),
        (mid_channels, 3),
        (mid_channels, 3),
        "pool",
        (mid_channels, 3),
        (last_channels, 3),
        (last_channels, 3),
        "pool",
    ]
    layers: list[nn.Module] = []
    c_in, side = input_shape[0], input_shape[1]
    for step in plan:
        if step == "pool":
            layers.append(nn.MaxPool2d(2))
            side //= 2
        else:
            layers += conv_bn_relu(c_in, step[0], step[1])
            c_in = step[0]
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(c_in * side * side, num_classes),
        nn.BatchNorm1d(num_classes),
    )
