"""APCNet's head: adaptive context modules (ACM) at several pooling scales.

Adaptive Pyramid Context Network for Semantic Segmentation (He et al., CVPR 2019),
https://openaccess.thecvf.com/content_CVPR_2019/html/He_Adaptive_Pyramid_Context_Network_for_Semantic_Segmentation_CVPR_2019_paper.html

An ACM at scale s pools the feature to s x s region descriptors and lets every pixel take its own
mix of them: affinities ``sigmoid(conv1x1(x + g))`` of each pixel to the s^2 regions, where x is the
reduced feature and g a transform of its global average (the paper's global-guided local affinity),
weight the reduced region descriptors; a 1x1 conv of that context is added to x, ReLU, and
optionally fused by one more 1x1 conv (mmsegmentation's ``fusion``). The head concatenates the
feature with its ACMs' outputs and fuses them by a 3x3 conv (mmsegmentation's ``APCHead``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.registry import MODELS

from .psp_head import check_sizes

__all__ = ['APCHead', 'AdaptiveContext']


class AdaptiveContext(nn.Module):
    """One adaptive context module: (B, in_channels, H, W) -> (B, channels, H, W).

    Args:
        in_channels: channels of the input feature.
        channels: width of the region descriptors, the reduced feature and the output.
        pool_scale: the regions are an s x s grid of the feature (adaptive average pooling).
        fusion: a last 1x1 conv + norm + ReLU on the output.
        norm: norm of the convolutions.
    """

    def __init__(self, in_channels: int, channels: int, pool_scale: int, fusion: bool = True,
                 norm: str = 'BN') -> None:
        super().__init__()
        self.pool_scale = pool_scale
        self.pooled_reduce = ConvBNReLU(in_channels, channels, 1, norm=norm)
        self.input_reduce = ConvBNReLU(in_channels, channels, 1, norm=norm)
        self.global_info = ConvBNReLU(channels, channels, 1, norm=norm)
        self.affinity = nn.Conv2d(channels, pool_scale * pool_scale, 1)
        self.residual = ConvBNReLU(channels, channels, 1, norm=norm)
        self.fusion = ConvBNReLU(channels, channels, 1, norm=norm) if fusion else None

    def extra_repr(self) -> str:
        return f'pool_scale={self.pool_scale}'

    def forward(self, x: Tensor) -> Tensor:
        regions = self.pooled_reduce(F.adaptive_avg_pool2d(x, self.pool_scale)).flatten(2)  # B, C, s^2
        x = self.input_reduce(x)  # B, C, H, W
        guide = self.global_info(x.mean(dim=(2, 3), keepdim=True))  # B, C, 1, 1
        affinity = torch.sigmoid(self.affinity(x + guide)).flatten(2)  # B, s^2, HW
        context = torch.bmm(regions, affinity).view_as(x)  # B, C, HW: each pixel's mix of the regions
        out = F.relu(self.residual(context) + x)
        return out if self.fusion is None else self.fusion(out)


@MODELS.register_module()
class APCHead(nn.Module):
    """[feature, ACM_s(feature) for s in pool_scales] -> concat -> conv 3x3 -> classifier.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of each ACM and of the head.
        num_classes: number of classes of the logits.
        pool_scales: one :class:`AdaptiveContext` per grid size.
        fusion: each ACM ends with one more 1x1 conv (mmsegmentation's option; True in its recipes).
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the convolutions ('BN', 'SyncBN', ...).

    Raises:
        ValueError: ``pool_scales`` not a non-empty list of integers >= 1, ``fusion`` not a bool.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, pool_scales=(1, 2, 3, 6),
                 fusion: bool = True, in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        self.pool_scales = check_sizes('APCHead', 'pool_scales', pool_scales)
        if not isinstance(fusion, bool):
            raise ValueError(f'APCHead: fusion must be True or False, got {fusion!r}')
        self.in_index = in_index
        self.contexts = nn.ModuleList(AdaptiveContext(in_channels, channels, s, fusion, norm)
                                      for s in self.pool_scales)
        self.bottleneck = ConvBNReLU(in_channels + len(self.pool_scales) * channels, channels, 3, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        return {'out': self.cls(conv_of_concat(self.bottleneck, [x, *(acm(x) for acm in self.contexts)]))}
