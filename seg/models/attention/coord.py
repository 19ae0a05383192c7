"""Coordinate Attention for Efficient Mobile Network Design (Hou et al., CVPR 2021),
https://arxiv.org/abs/2103.02907

Average pooling along W gives a (C, H) descriptor and along H a (C, W) one; both, concatenated
along space, pass one shared 1x1 conv ``C -> mid`` with BN and h-swish
(``mid = max(min_channels, C // reduction)``, i.e. 8 and 32 by default); split again, a 1x1 conv
``mid -> C`` and a sigmoid give the H gate (C, H, 1) and the W gate (C, 1, W), both multiplied onto
the input: ``y = x * g_h * g_w``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int


@ATTENTION.register_module(name='coord')
class CoordAttention(AttentionModule):
    """Coordinate attention.

    Args:
        channels: input (and output) channels C.
        reduction: ratio of the shared bottleneck; ``mid = max(min_channels, C // reduction)``
            (a reduction above C is valid: the width floors at ``min_channels``).
        min_channels: the smallest bottleneck width.

    Parameters: ``(C * mid + mid) + 2 * mid + 2 * (mid * C + C)`` (conv1 with bias, BN, the two gate
    convs with bias). The gates are the outputs of the submodules ``gate_h`` (B, C, H, 1) and
    ``gate_w`` (B, C, 1, W).
    """

    attention_maps = {'gate_h': 'spatial', 'gate_w': 'spatial'}
    conv_bn_pairs = (('conv1', 'bn1'),)  # folded for inference (seg.models.fuse)

    @classmethod
    def param_count(cls, channels: int, reduction: int = 32, min_channels: int = 8) -> int:
        mid = max(min_channels, channels // reduction)
        return (channels * mid + mid) + 2 * mid + 2 * (mid * channels + channels)

    def maps(self, records, locate=None):
        """One spatial map: the product of the row and column gates, averaged over the channels."""
        if not records.get('gate_h') or not records.get('gate_w'):
            return {}
        product = (records['gate_h'][-1][0] * records['gate_w'][-1][0]).mean(dim=0)  # [H, W]
        return {'spatial': AttentionMap('spatial', product, 'row gate x column gate, mean over channels')}

    def __init__(self, channels: int, reduction: int = 32, min_channels: int = 8) -> None:
        super().__init__()
        self.channels = check_int('CoordAttention', 'channels', channels)
        check_int('CoordAttention', 'reduction', reduction)
        check_int('CoordAttention', 'min_channels', min_channels)
        self.mid_channels = mid = max(min_channels, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mid, channels, 1)
        self.conv_w = nn.Conv2d(mid, channels, 1)
        self.gate_h = nn.Sigmoid()
        self.gate_w = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Reweight ``x`` (B, C, H, W) by its row and column gates."""
        check_input('CoordAttention', x, self.channels)
        h, w = x.shape[2:]
        pool_h = x.mean(dim=3, keepdim=True)  # [B, C, H, 1]
        pool_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # [B, C, W, 1]
        y = self.act(self.bn1(self.conv1(torch.cat([pool_h, pool_w], dim=2))))  # [B, mid, H + W, 1]
        y_h, y_w = torch.split(y, [h, w], dim=2)  # [B, mid, H, 1], [B, mid, W, 1]
        g_h = self.gate_h(self.conv_h(y_h))  # [B, C, H, 1]
        g_w = self.gate_w(self.conv_w(y_w.transpose(2, 3)))  # [B, C, 1, W]
        return x * g_h * g_w  # [B, C, H, W]
