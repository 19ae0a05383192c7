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
    Applying the same module R times is CCNet's recurrent criss-cross attention (RCCA):
    :class:`RecurrentCrissCross`.
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


class RecurrentCrissCross(nn.Module):
    """Recurrent criss-cross attention (RCCA): one criss-cross pass applied R times, weights shared.

    After one pass a pixel has seen its row and column; after two (the paper's R = 2) every pixel
    has received information from every other one. The passes share the one
    :class:`CrissCrossAttention` submodule ``cca``, so the parameters do not depend on R, and a
    forward hook on ``cca`` fires once per pass.

    Args:
        channels: input (and output) channels C.
        recurrence: number of passes R (>= 1).
        reduction: query / key width is ``channels // reduction``.

    Raises:
        ValueError: ``recurrence`` is not an integer >= 1, or ``reduction`` is not in [1, channels].
    """

    def __init__(self, channels: int, recurrence: int = 2, reduction: int = 8) -> None:
        super().__init__()
        if isinstance(recurrence, bool) or not isinstance(recurrence, int) or recurrence < 1:
            raise ValueError(f'recurrence must be an integer >= 1, got {recurrence!r}')
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(channels, reduction)

    def extra_repr(self) -> str:
        return f'recurrence={self.recurrence}'

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.recurrence):
            x = self.cca(x)
        return x
