"""PSPNet's head: the pyramid pooling module.

Pyramid Scene Parsing Network (Zhao et al., CVPR 2017), https://arxiv.org/abs/1612.01105

The feature is average-pooled to a few grids (1x1, 2x2, 3x3, 6x6 in the paper: bins of the whole
image down to sub-regions), each grid reduced by a 1x1 conv + norm + ReLU, upsampled back
(bilinear) and concatenated with the feature itself; a 3x3 conv fuses them (mmsegmentation's
``PSPHead``, whose ``align_corners`` the upsampling follows: True in its 769x769 recipes).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.registry import MODELS

__all__ = ['PSPHead', 'check_sizes']


def check_sizes(owner: str, name: str, values) -> tuple[int, ...]:
    """``values`` as a tuple of integers >= 1, if it is a non-empty list or tuple of them; else
    ``ValueError`` naming the owner, the option and the value (the pyramid heads' scales, dilations and
    filter sizes)."""
    if (not isinstance(values, (list, tuple)) or not values
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)):
        raise ValueError(f'{owner}: {name} must be a non-empty list of integers >= 1, got {values!r}')
    return tuple(int(v) for v in values)


@MODELS.register_module()
class PSPHead(nn.Module):
    """[feature, up(conv1x1(avgpool_s(feature))) for s in pool_scales] -> concat -> conv 3x3 -> classifier.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of each pyramid branch and of the head.
        num_classes: number of classes of the logits.
        pool_scales: the grids the feature is pooled to (adaptive average pooling), one branch each.
        align_corners: of the bilinear upsampling of the branches (mmsegmentation's option).
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the convolutions ('BN', 'SyncBN', ...).

    Raises:
        ValueError: ``pool_scales`` not a non-empty list of integers >= 1, ``align_corners`` not a bool.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, pool_scales=(1, 2, 3, 6),
                 align_corners: bool = False, in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        self.pool_scales = check_sizes('PSPHead', 'pool_scales', pool_scales)
        if not isinstance(align_corners, bool):
            raise ValueError(f'PSPHead: align_corners must be True or False, got {align_corners!r}')
        self.align_corners = align_corners
        self.in_index = in_index
        self.pyramid = nn.ModuleList(ConvBNReLU(in_channels, channels, 1, norm=norm) for _ in self.pool_scales)
        self.bottleneck = ConvBNReLU(in_channels + len(self.pool_scales) * channels, channels, 3, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def extra_repr(self) -> str:
        return f'pool_scales={self.pool_scales}, align_corners={self.align_corners}'

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        outs = [x]
        for scale, conv in zip(self.pool_scales, self.pyramid):
            pooled = conv(F.adaptive_avg_pool2d(x, scale))
            outs.append(F.interpolate(pooled, size=x.shape[-2:], mode='bilinear', align_corners=self.align_corners))
        return {'out': self.cls(conv_of_concat(self.bottleneck, outs))}
