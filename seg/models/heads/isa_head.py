"""ISANet's head: conv 3x3 -> interlaced sparse self-attention -> concat with the conv's output ->
conv 1x1 -> classifier.

Interlaced Sparse Self-Attention for Semantic Segmentation (Huang et al., 2019),
https://arxiv.org/abs/1907.12273
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from seg.models.attention import ISA
from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.registry import MODELS

__all__ = ['ISAHead']


@MODELS.register_module()
class ISAHead(nn.Module):
    """conv 3x3 -> ISA (global relation, then local) -> concat [ISA output, conv output] -> conv 1x1
    -> classifier (mmsegmentation's ISAHead).

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of the head (and of the ISA module).
        num_classes: number of classes of the logits.
        isa_channels: query / key width of the two relations; ``None`` means ``channels // 2``
            (256 for 512, as the published models).
        down_factor: the local block ``(Lh, Lw)`` (:class:`seg.models.attention.ISA`).
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the head's convolutions and of the module's projections.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, isa_channels: int | None = None,
                 down_factor: Sequence[int] = (8, 8), in_index: int = -1, dropout: float = 0.1,
                 norm: str = 'BN') -> None:
        super().__init__()
        self.in_index = in_index
        self.conv_in = ConvBNReLU(in_channels, channels, 3, norm=norm)
        self.context = ISA(channels, isa_channels=isa_channels, down_factor=down_factor, norm=norm)
        self.bottleneck = ConvBNReLU(2 * channels, channels, 1, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = self.conv_in(feats[self.in_index])
        return {'out': self.cls(conv_of_concat(self.bottleneck, [self.context(x), x]))}
