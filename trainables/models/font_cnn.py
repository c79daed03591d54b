"""The font seed's ResNet-style bottleneck CNN (2,636,148 parameters at the seed's values).

Reconstructed from the seed's description and pinned by its parameter count: convs keep
their bias, each bottleneck's middle width is its stage's input width, the first block of
a stage changes width without a shortcut (the count leaves no room for a projection) and
the second adds an identity shortcut, and the 256-wide FC layer is batch-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.models.registry import register_model

MIN_IMAGE_SIZE = 32  # the network halves its input five times: below this nothing is left


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_mid: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 1),
            nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_mid, 3, padding=1),
            nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_out, 1),
            nn.BatchNorm2d(c_out),
        )
        self.residual = c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return torch.relu(y + x if self.residual else y)


class Resize(nn.Module):
    """Resamples the images to ``size`` x ``size`` (antialiased) as the network's first step.

    Inside the model, not in the data: the data, its augmentation, an export and a prediction stay
    at the task's 90x90, and a smaller network input is a searched knob like any other.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
        )


@register_model(
    "font_cnn",
    stem_channels=16,
    stem_kernel=7,
    width_mult=1.0,  # scales the four stage widths (32, 128, 256, 512)
    blocks_per_stage=2,
    fc_width=256,
    dropout1=0.5,  # before the first FC layer
    dropout2=0.3,  # before the classifier
    image_size=90,  # the side the network sees; the seed's 90 is the images' own, no resampling
)
def font_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    stem_channels: int,
    stem_kernel: int,
    width_mult: float,
    blocks_per_stage: int,
    fc_width: int,
    dropout1: float,
    dropout2: float,
    image_size: int,
) -> nn.Module:
    if image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"image_size must be at least {MIN_IMAGE_SIZE} for the font CNN, got {image_size}")
    widths = [max(8, round(w * width_mult)) for w in (32, 128, 256, 512)]
    resize = [Resize(image_size)] if (image_size, image_size) != tuple(input_shape[1:]) else []
    layers: list[nn.Module] = [
        *resize,
        nn.Conv2d(input_shape[0], stem_channels, stem_kernel, padding=stem_kernel // 2),
        nn.BatchNorm2d(stem_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]
    c_in = stem_channels
    for i, c_out in enumerate(widths):
        stage_in = c_in
        for _ in range(blocks_per_stage):
            layers.append(Bottleneck(c_in, stage_in, c_out))
            c_in = c_out
        layers.append(nn.AvgPool2d(2) if i == len(widths) - 1 else nn.MaxPool2d(2))
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features(torch.zeros(1, *input_shape)).numel()
    model = nn.Sequential(
        features,
        nn.Flatten(),
        nn.Dropout(dropout1),
        nn.Linear(flat, fc_width),
        nn.BatchNorm1d(fc_width),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout2),
        nn.Linear(fc_width, num_classes),
    )
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")  # the seed's He-uniform
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
