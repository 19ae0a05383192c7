"""Selective Kernel Networks (Li et al., CVPR 2019), https://arxiv.org/abs/1903.06586

Split: M branches convolve the input with different kernel sizes (conv, BN, ReLU each).
Fuse: their sum U is pooled to s (B, C) and squeezed to ``z = relu(BN(W s))`` of width
``d = max(C // r, L)``. Select: one matrix per branch maps z back to C logits; a softmax across
the M branches gives per-channel branch weights a_m, and the output is ``V = sum_m a_m * U_m``.

The paper's branches are 3x3 and 5x5 (default here); the 5x5 one may be built as a 3x3 kernel
with dilation 2 (``dilated=True``: kernel k becomes 3x3 with dilation (k - 1) // 2).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int


@ATTENTION.register_module(name='sk')
class SK(AttentionModule):
    """Selective-kernel convolution (attention over branch kernel sizes).

    Args:
        channels: input (and output) channels C.
        kernels: odd kernel sizes of the M >= 2 branches, e.g. ``(3, 5)`` (paper) or
            ``(1, 3, 5, 7)``.
        reduction: ratio r of the squeeze width ``d = max(C // r, min_dim)``.
        min_dim: the smallest squeeze width L.
        groups: groups of the branch convolutions (must divide C).
        dilated: build each kernel k >= 3 as a 3x3 convolution with dilation (k - 1) // 2.
        squeeze_norm: BN in the squeeze ``z = relu(BN(W s))`` as in the paper; in training it
            needs more than one sample per batch (turn it off for batch size 1).

    Parameters: ``sum_m (C * C / groups * k_m^2 + 2 C)`` (bias-free branch convs and their BN)
    ``+ C * d + 2 d`` (squeeze linear and BN; ``C * d + d`` with a biased linear and no BN when
    ``squeeze_norm`` is off) ``+ M * d * C``. The branch weights (B, M, C) are the output of
    the submodule ``gate``.
    """

    attention_maps = {'gate': 'branch'}

    @classmethod
    def param_count(cls, channels: int, kernels: Sequence[int] = (3, 5), reduction: int = 16, min_dim: int = 32,
                    groups: int = 1, dilated: bool = False, squeeze_norm: bool = True) -> int:
        d = max(channels // reduction, min_dim)
        sizes = [3 if dilated and k > 1 else k for k in kernels]
        branches = sum(channels * (channels // groups) * k * k + 2 * channels for k in sizes)
        squeeze = channels * d + (2 * d if squeeze_norm else d)
        return branches + squeeze + len(kernels) * d * channels

    def __init__(self, channels: int, kernels: Sequence[int] = (3, 5), reduction: int = 16,
                 min_dim: int = 32, groups: int = 1, dilated: bool = False,
                 squeeze_norm: bool = True) -> None:
        super().__init__()
        self.channels = check_int('SK', 'channels', channels)
        check_int('SK', 'reduction', reduction)
        check_int('SK', 'min_dim', min_dim)
        check_int('SK', 'groups', groups)
        if channels % groups != 0:
            raise ValueError(f'SK: channels must be divisible by groups, got channels={channels}, '
                             f'groups={groups}')
        if isinstance(kernels, (str, bytes)) or not isinstance(kernels, Sequence) or len(kernels) < 2:
            raise ValueError(f'SK: kernels must be a sequence of at least two odd kernel sizes, '
                             f'got {kernels!r}')
        for k in kernels:
            check_int('SK', 'each of kernels', k)
            if k % 2 == 0:
                raise ValueError(f'SK: kernel sizes must be odd (same-size padding), got {tuple(kernels)}')
        self.kernels = tuple(int(k) for k in kernels)
        self.dim = d = max(channels // reduction, min_dim)
        self.branches = nn.ModuleList()
        for k in self.kernels:
            size, dilation = (3, (k - 1) // 2) if dilated and k > 1 else (k, 1)
            self.branches.append(nn.Sequential(
                nn.Conv2d(channels, channels, size, padding=dilation * (size // 2), dilation=dilation,
                          groups=groups, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True)))
        self.squeeze = nn.Sequential(
            nn.Linear(channels, d, bias=not squeeze_norm),
            nn.BatchNorm1d(d) if squeeze_norm else nn.Identity(),
            nn.ReLU(inplace=True))
        self.select = nn.Linear(d, len(self.kernels) * channels, bias=False)
        self.gate = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Select among the branch responses of ``x`` (B, C, H, W) per channel."""
        check_input('SK', x, self.channels)
        b, c = x.shape[:2]
        feats = torch.stack([branch(x) for branch in self.branches], dim=1)  # [B, M, C, H, W]
        s = feats.sum(dim=1).mean(dim=(2, 3))  # [B, C]: fuse by sum, global average pool
        z = self.squeeze(s)  # [B, d]
        a = self.gate(self.select(z).view(b, len(self.kernels), c))  # [B, M, C]: softmax over M
        return (feats * a.view(b, len(self.kernels), c, 1, 1)).sum(dim=1)  # [B, C, H, W]
