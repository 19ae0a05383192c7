"""Criss-cross attention block.

CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.ops import criss_cross_attention


class CrissCrossAttention(nn.Module):
    """One criss-cross pass: ``gamma * attention(x) + x``, gamma starting at 0.

    Query and key are 1x1 projections to ``channels // reduction``; the value keeps ``channels``.
    Applying the same module R times is CCNet's recurrent criss-cross attention (RCCA).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f'reduction must be in [1, channels={channels}], got {reduction}')
        qk = channels // reduction
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        out = criss_cross_attention(self.query(x), self.key(x), self.value(x))
        return self.gamma * out + x
