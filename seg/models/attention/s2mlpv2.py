"""S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision (Yu et al., 2021),
https://arxiv.org/abs/2108.01072

The spatial-shift block of S2-MLPv2: a per-pixel linear layer expands C to 3C; the first third
is spatially shifted one way, the second third the other way, the last third kept; split
attention weighs the three per channel and sums them; a last per-pixel linear layer maps back
to C channels.

Spatial shift: the channels are cut into four quarters, each moved by one pixel in one
direction (down, up, right, left for the first shift; right, left, down, up for the second);
the border row or column that nothing moves into keeps its value.

Split attention (after ResNeSt): the K = 3 parts are summed and averaged over the pixels to
a (B, C) vector a; ``softmax_K(W2 gelu(W1 a))`` gives per-channel weights of the parts. The
reference code sums over pixels instead of averaging, which makes the weights depend on the
image size; averaging keeps them comparable across the input sizes of segmentation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int


def _shift(x: Tensor, dim: int, step: int) -> Tensor:
    """Move ``x`` one pixel along ``dim`` (+1: to higher indices), keeping the vacated border."""
    n = x.shape[dim]
    if step > 0:  # out[i] = x[i - 1] for i >= 1, out[0] = x[0]
        return torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim=dim)
    return torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)  # out[i] = x[i + 1]


def spatial_shift(x: Tensor, moves: tuple[tuple[int, int], ...]) -> Tensor:
    """Shift the four channel quarters of ``x`` (B, H, W, C) one pixel each.

    Args:
        x: channels-last features (B, H, W, C).
        moves: four ``(dim, step)`` pairs, one per channel quarter, dim 1 (H) or 2 (W),
            step +1 or -1.

    Returns:
        (B, H, W, C), the quarters shifted.
    """
    c = x.shape[3]
    bounds = [0, c // 4, c // 2, 3 * c // 4, c]
    parts = [_shift(x[..., bounds[i]:bounds[i + 1]], dim, step) for i, (dim, step) in enumerate(moves)]
    return torch.cat(parts, dim=3)  # [B, H, W, C]


SHIFT1 = ((1, 1), (1, -1), (2, 1), (2, -1))  # down, up, right, left
SHIFT2 = ((2, 1), (2, -1), (1, 1), (1, -1))  # right, left, down, up


class SplitAttention(nn.Module):
    """Split attention over K channels-last parts.

    Args:
        channels: channels C of each part.
        parts: number of parts K.
    """

    def __init__(self, channels: int, parts: int = 3) -> None:
        super().__init__()
        self.parts = parts
        self.fc1 = nn.Linear(channels, channels, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(channels, channels * parts, bias=False)
        self.gate = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Weigh and sum the parts of ``x`` (B, K, H, W, C) into (B, H, W, C)."""
        b, k, _, _, c = x.shape
        a = x.sum(dim=1).mean(dim=(1, 2))  # [B, C]
        weights = self.gate(self.fc2(self.act(self.fc1(a))).view(b, k, c))  # [B, K, C]: softmax over K
        return (x * weights.view(b, k, 1, 1, c)).sum(dim=1)  # [B, H, W, C]


@ATTENTION.register_module(name='s2mlpv2')
class S2MLPv2(AttentionModule):
    """Spatial-shift MLP block of S2-MLPv2 with split attention.

    Args:
        channels: input (and output) channels C.

    Parameters: ``3 C^2 + 3 C`` (expansion) ``+ C^2 + 3 C^2`` (split attention, bias-free)
    ``+ C^2 + C`` (projection) ``= 8 C^2 + 4 C``. The part weights (B, 3, C) are the output of the
    submodule ``split_attention.gate``.
    """

    attention_maps = {'split_attention.gate': 'branch'}

    @classmethod
    def param_count(cls, channels: int) -> int:
        return 8 * channels ** 2 + 4 * channels

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_int('S2MLPv2', 'channels', channels)
        self.expand = nn.Linear(channels, 3 * channels)
        self.split_attention = SplitAttention(channels, 3)
        self.project = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        """Mix ``x`` (B, C, H, W) with shifted neighbours, weighted by split attention."""
        check_input('S2MLPv2', x, self.channels)
        c = self.channels
        y = self.expand(x.permute(0, 2, 3, 1))  # [B, H, W, 3C]
        parts = torch.stack([spatial_shift(y[..., :c], SHIFT1),
                             spatial_shift(y[..., c:2 * c], SHIFT2),
                             y[..., 2 * c:]], dim=1)  # [B, 3, H, W, C]
        out = self.project(self.split_attention(parts))  # [B, H, W, C]
        return out.permute(0, 3, 1, 2)  # [B, C, H, W]
