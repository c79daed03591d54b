"""The EMNIST seed's LSTM: image rows as a sequence, linear head on the last step."""

from __future__ import annotations

import torch
from torch import nn

from hpsearch.trainables.models.registry import register_model


class RowLSTM(nn.Module):
    def __init__(self, row_width: int, hidden: int, layers: int, dropout: float, num_classes: int) -> None:
        super().__init__()
        # The seed puts dropout on the outputs only, not between stacked layers.
        self.lstm = nn.LSTM(row_width, hidden, num_layers=layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.flatten(1, 2) if x.shape[1] == 1 else x.permute(0, 2, 1, 3).flatten(2)  # [B, H, C*W]
        out, _ = self.lstm(rows)  # zero initial state, as the seed
        return self.head(self.dropout(out[:, -1]))


@register_model("row_lstm", hidden=256, layers=3, dropout=0.2)
def row_lstm(
    num_classes: int, input_shape: tuple[int, int, int], *, hidden: int, layers: int, dropout: float
) -> nn.Module:
    channels, _, width = input_shape
    return RowLSTM(channels * width, hidden, layers, dropout, num_classes)
