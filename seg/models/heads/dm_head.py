"""DMNet's head: dynamic convolutional modules (DCM) with filters of several sizes.

Dynamic Multi-scale Filters for Semantic Segmentation (He et al., ICCV 2019),
https://openaccess.thecvf.com/content_ICCV_2019/papers/He_Dynamic_Multi-Scale_Filters_for_Semantic_Segmentation_ICCV_2019_paper.pdf

A DCM of size k generates, for each image, one k x k filter per channel from the image itself:
the feature is average-pooled to k x k and a 1x1 conv (with bias) maps it to ``channels`` filters.
The 1x1-reduced feature is convolved depthwise with its own image's filters (zero padding keeping
the size; for an even k one more row / column on the top / left, as mmsegmentation pads), then
norm + ReLU and optionally one more 1x1 conv (mmsegmentation's ``fusion``). The head concatenates
the feature with its DCMs' outputs and fuses them by a 3x3 conv (mmsegmentation's ``DMHead``).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.models.norm import build_norm
from seg.registry import MODELS

from .psp_head import check_sizes

__all__ = ['DMHead', 'DynamicConv', 'dynamic_depthwise_conv']


def dynamic_depthwise_conv(x: Tensor, filters: Tensor) -> Tensor:
    """Each image's channels convolved with that image's own filters, as one grouped convolution.

    Args:
        x: (B, C, H, W).
        filters: (B, C, k, k), one filter per image and channel.

    Returns:
        (B, C, H, W): ``out[b, c] = conv2d(x[b, c], filters[b, c])`` (cross-correlation), zero padded to
        keep the size: ``(k - 1) // 2`` on every side, plus one on the top and left for an even k.
    """
    b, c, h, w = x.shape
    k = filters.shape[-1]
    if filters.shape != (b, c, k, k):
        raise ValueError(f'dynamic_depthwise_conv: filters must be (B, C, k, k) = ({b}, {c}, k, k) for x of shape '
                         f'{tuple(x.shape)}, got {tuple(filters.shape)}')
    x = x.reshape(1, b * c, h, w)  # the batch becomes groups: one filter per (image, channel)
    pad = (k - 1) // 2
    if k % 2 == 0:
        x = F.pad(x, (pad + 1, pad, pad + 1, pad))
        pad = 0
    out = F.conv2d(x, filters.reshape(b * c, 1, k, k), padding=pad, groups=b * c)
    return out.view(b, c, h, w)


class DynamicConv(nn.Module):
    """One dynamic convolutional module: (B, in_channels, H, W) -> (B, channels, H, W).

    Args:
        in_channels: channels of the input feature.
        channels: width of the reduced feature, of the filters and of the output.
        filter_size: k, the size of the generated depthwise filters.
        fusion: a last 1x1 conv + norm + ReLU on the output.
        norm: norm of the convolutions and of the dynamic convolution's output.
    """

    def __init__(self, in_channels: int, channels: int, filter_size: int, fusion: bool = False,
                 norm: str = 'BN') -> None:
        super().__init__()
        self.filter_size = filter_size
        self.filter_gen = nn.Conv2d(in_channels, channels, 1)
        self.input_reduce = ConvBNReLU(in_channels, channels, 1, norm=norm)
        self.norm = build_norm(norm, channels)
        self.fusion = ConvBNReLU(channels, channels, 1, norm=norm) if fusion else None

    def extra_repr(self) -> str:
        return f'filter_size={self.filter_size}'

    def forward(self, x: Tensor) -> Tensor:
        filters = self.filter_gen(F.adaptive_avg_pool2d(x, self.filter_size))  # B, C, k, k
        out = F.relu(self.norm(dynamic_depthwise_conv(self.input_reduce(x), filters)))
        return out if self.fusion is None else self.fusion(out)


@MODELS.register_module()
class DMHead(nn.Module):
    """[feature, DCM_k(feature) for k in filter_sizes] -> concat -> conv 3x3 -> classifier.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of each DCM and of the head.
        num_classes: number of classes of the logits.
        filter_sizes: one :class:`DynamicConv` per filter size k.
        fusion: each DCM ends with one more 1x1 conv (mmsegmentation's option; False in its recipes).
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the convolutions ('BN', 'SyncBN', ...).

    Raises:
        ValueError: ``filter_sizes`` not a non-empty list of integers >= 1, ``fusion`` not a bool.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, filter_sizes=(1, 3, 5, 7),
                 fusion: bool = False, in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        self.filter_sizes = check_sizes('DMHead', 'filter_sizes', filter_sizes)
        if not isinstance(fusion, bool):
            raise ValueError(f'DMHead: fusion must be True or False, got {fusion!r}')
        self.in_index = in_index
        self.dcms = nn.ModuleList(DynamicConv(in_channels, channels, k, fusion, norm) for k in self.filter_sizes)
        self.bottleneck = ConvBNReLU(in_channels + len(self.filter_sizes) * channels, channels, 3, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        return {'out': self.cls(conv_of_concat(self.bottleneck, [x, *(dcm(x) for dcm in self.dcms)]))}
