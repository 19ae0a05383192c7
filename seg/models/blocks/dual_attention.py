"""DANet's position and channel attention modules.

Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019), https://arxiv.org/abs/1809.02983
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.ops import channel_attention, position_attention


class PositionAttention(nn.Module):
    """PAM: ``gamma * sum_j softmax_j(q_i . k_j) v_j + x`` with q, k at ``channels // reduction``,
    no 1/sqrt(d) scale, gamma starting at 0."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f'PAM reduction must be in [1, channels={channels}], got {reduction}')
        self.query = nn.Conv2d(channels, channels // reduction, 1)
        self.key = nn.Conv2d(channels, channels // reduction, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        out = position_attention(self.query(x), self.key(x), self.value(x), scale=1.0)
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    """CAM: ``gamma * softmax(max(E) - E) X + x`` with ``E = X X^T`` over pixels, gamma starting at 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.gamma * channel_attention(x) + x


class DualAttention(nn.Module):
    """PAM and CAM side by side on one feature, fused by sum (DANet's block, as one plug-in).

    ``x + gamma_p * PAM-attention(x) + gamma_c * CAM-attention(x)``: the two residual branches share
    one identity, so the block starts as the identity (both gammas start at 0).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.pam = PositionAttention(channels, reduction)
        self.cam = ChannelAttention(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.pam(x) + self.cam(x) - x  # each branch carries x once; keep it once
