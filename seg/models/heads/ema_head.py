"""EMANet's head: conv 3x3 -> the EMA unit -> conv 3x3 -> concat with the input -> conv 3x3 -> classifier.

Expectation-Maximization Attention Networks for Semantic Segmentation (Li et al., ICCV 2019),
https://arxiv.org/abs/1907.13426
"""
from __future__ import annotations

from torch import Tensor, nn

from seg.models.attention import EMA, check_int
from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.registry import MODELS

__all__ = ['EMAHead']


@MODELS.register_module()
class EMAHead(nn.Module):
    """conv 3x3 (to ``ema_channels``) -> EMA unit -> conv 3x3 (to ``channels``) -> [concat with the
    head input -> conv 3x3] -> classifier (mmsegmentation's EMAHead).

    Its own shape rather than an :class:`AttentionHead` preset: the EMA unit runs at
    ``ema_channels``, not at the head's width.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of the head after the unit.
        num_classes: number of classes of the logits.
        ema_channels: width of the EMA unit; ``None`` means ``2 * channels`` (512 for 256, as the
            published models).
        num_bases, num_stages, momentum: the unit's K, T and the bases' momentum (:class:`EMA`).
        concat_input: concatenate the head input before the last conv (mmsegmentation's default);
            without it the classifier reads the conv after the unit.
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the head's convolutions and of the unit.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, ema_channels: int | None = None,
                 num_bases: int = 64, num_stages: int = 3, concat_input: bool = True, momentum: float = 0.1,
                 in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        ema_channels = 2 * channels if ema_channels is None else check_int('EMAHead', 'ema_channels', ema_channels)
        if not isinstance(concat_input, bool):
            raise ValueError(f'EMAHead: concat_input must be a bool, got {concat_input!r}')
        self.in_index = in_index
        self.conv_in = ConvBNReLU(in_channels, ema_channels, 3, norm=norm)
        self.context = EMA(ema_channels, num_bases=num_bases, num_stages=num_stages, momentum=momentum, norm=norm)
        self.conv_out = ConvBNReLU(ema_channels, channels, 3, norm=norm)
        self.bottleneck = ConvBNReLU(in_channels + channels, channels, 3, norm=norm) if concat_input else None
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        out = self.conv_out(self.context(self.conv_in(x)))
        if self.bottleneck is not None:
            out = conv_of_concat(self.bottleneck, [x, out])
        return {'out': self.cls(out)}
