"""Small building blocks shared by the heads."""
from __future__ import annotations

from torch import nn

from seg.models.norm import build_norm


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> norm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 norm: str = 'BN') -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                      bias=False),
            build_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Classifier(nn.Sequential):
    """Dropout2d -> 1x1 conv to the class logits (mmseg's ``conv_seg``)."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
                         nn.Conv2d(channels, num_classes, 1))
        nn.init.normal_(self[1].weight, 0, 0.01)
        nn.init.zeros_(self[1].bias)
