"""DeepLabV3's head: atrous spatial pyramid pooling (ASPP) with image-level features.

Rethinking Atrous Convolution for Semantic Image Segmentation (Chen et al., 2017),
https://arxiv.org/abs/1706.05587

Parallel branches read the feature at several rates: a 1x1 conv (rate 1) and 3x3 convs dilated by
the other rates (12, 24, 36 at output stride 8, twice the paper's 6, 12, 18 at output stride 16),
plus the image-level branch (global average pool -> 1x1 conv, broadcast back over the feature map);
each is conv + norm + ReLU. Their concatenation is fused by a 3x3 conv (mmsegmentation's
``ASPPHead``, which, unlike the paper's 1x1 fusion, uses 3x3 and does not concatenate the input).
"""
from __future__ import annotations

from torch import Tensor, nn

from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.registry import MODELS

from .psp_head import check_sizes

__all__ = ['ASPPHead']


@MODELS.register_module()
class ASPPHead(nn.Module):
    """[image pool, conv_d(feature) for d in dilations] -> concat -> conv 3x3 -> classifier.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of each branch and of the head.
        num_classes: number of classes of the logits.
        dilations: one branch per rate: 1 is a 1x1 conv, d > 1 a 3x3 conv of dilation (and padding) d.
            mmsegmentation's default is (1, 6, 12, 18); its output-stride-8 recipes use (1, 12, 24, 36).
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the convolutions ('BN', 'SyncBN', ...).

    Raises:
        ValueError: ``dilations`` not a non-empty list of integers >= 1.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dilations=(1, 6, 12, 18),
                 in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        self.dilations = check_sizes('ASPPHead', 'dilations', dilations)
        self.in_index = in_index
        self.image_pool = ConvBNReLU(in_channels, channels, 1, norm=norm)
        self.aspp = nn.ModuleList(ConvBNReLU(in_channels, channels, 1 if d == 1 else 3, dilation=d, norm=norm)
                                  for d in self.dilations)
        self.bottleneck = ConvBNReLU((len(self.dilations) + 1) * channels, channels, 3, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def extra_repr(self) -> str:
        return f'dilations={self.dilations}'

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        # The image-level feature is 1x1: its bilinear upsampling (either align_corners) is a broadcast.
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return {'out': self.cls(conv_of_concat(self.bottleneck, [pooled, *(branch(x) for branch in self.aspp)]))}
