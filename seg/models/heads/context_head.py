"""The shared shape of attention context heads (CCNet's head, generalised).

conv 3x3 -> context module (applied ``repeats`` times, weights shared) -> conv 3x3 ->
concat with the head input -> conv 3x3 -> dropout -> 1x1 classifier.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.models.layers import Classifier, ConvBNReLU


class ContextHead(nn.Module):
    """Wrap any shape-preserving context module (B, C, H, W) -> (B, C, H, W) into a decode head."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, context: nn.Module,
                 repeats: int = 1, in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        if repeats < 1:
            raise ValueError(f'repeats (recurrence) must be >= 1, got {repeats}')
        self.in_index = in_index
        self.repeats = repeats
        self.conv_in = ConvBNReLU(in_channels, channels, 3, norm=norm)
        self.context = context
        self.conv_out = ConvBNReLU(channels, channels, 3, norm=norm)
        self.bottleneck = ConvBNReLU(in_channels + channels, channels, 3, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        out = self.conv_in(x)
        for _ in range(self.repeats):
            out = self.context(out)
        out = self.conv_out(out)
        out = self.bottleneck(torch.cat([x, out], dim=1))
        return {'out': self.cls(out)}
