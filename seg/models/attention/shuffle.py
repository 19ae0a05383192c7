"""SA-Net: Shuffle Attention for Deep Convolutional Neural Networks (Zhang & Yang, ICASSP 2021),
https://arxiv.org/abs/2102.00240

The channels are cut into G groups; each group is halved into a channel branch and a spatial
branch of C / (2G) channels each:

- channel: ``x0 * sigmoid(w_c * mean_hw(x0) + b_c)``;
- spatial: ``x1 * sigmoid(w_s * GN(x1) + b_s)`` with a GroupNorm of one channel per group;

the halves are concatenated back, the groups reassembled, and a channel shuffle with 2 groups
mixes the two branches. Parameters: w_c, b_c, w_s, b_s and GN's affine pair, each of C / (2G),
i.e. ``3 C / G`` in all.

G must divide C / 2. The paper's G = 64 needs C divisible by 128; by default (``groups=None``) the
module takes 64 where it fits and otherwise the divisor of C / 2 nearest to 64 (the larger one on a
tie), so it builds at any even width (C = 48 -> G = 24, C = 96 -> G = 48), and says so once.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int

logger = logging.getLogger(__name__)

PAPER_GROUPS = 64
_REPORTED: set[tuple[int, int]] = set()


def default_groups(channels: int, preferred: int = PAPER_GROUPS) -> int:
    """The divisor of ``channels // 2`` nearest to ``preferred`` (the larger on a tie)."""
    half = channels // 2
    divisors = [g for g in range(1, half + 1) if half % g == 0]
    return min(divisors, key=lambda g: (abs(g - preferred), -g))


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle: output channel ``i * groups + g`` is input ``g * (C / groups) + i``.

    Args:
        x: (B, C, H, W) with C divisible by ``groups``.
        groups: number of groups.

    Returns:
        (B, C, H, W), the channels interleaved across the groups.
    """
    b, c, h, w = x.shape
    if c % groups != 0:
        raise ValueError(f'channel_shuffle: channels {c} not divisible by groups {groups}')
    x = x.view(b, groups, c // groups, h, w)  # [B, G, C/G, H, W]
    return x.transpose(1, 2).reshape(b, c, h, w)  # [B, C/G * G, H, W]


@ATTENTION.register_module(name='shuffle')
class ShuffleAttention(AttentionModule):
    """Shuffle attention.

    Args:
        channels: input (and output) channels C, even and divisible by ``2 * groups``.
        groups: number of groups G; ``None`` takes the paper's 64, or the divisor of C / 2 nearest
            to 64 where 64 does not fit (see the module docstring).

    Parameters: ``3 * C / G``. The weights are the outputs of the submodules ``channel_gate``
    (B, C / 2, 1, 1) and ``spatial_gate`` (B, C / 2, H, W): the half-channels of every group, group
    after group.
    """

    attention_maps = {'channel_gate': 'channel', 'spatial_gate': 'spatial'}

    @classmethod
    def param_count(cls, channels: int, groups: int | None = None) -> int:
        return 3 * channels // (groups or default_groups(channels))

    def __init__(self, channels: int, groups: int | None = None) -> None:
        super().__init__()
        self.channels = check_int('ShuffleAttention', 'channels', channels)
        if channels % 2:
            raise ValueError(f'ShuffleAttention: channels must be even (a channel and a spatial half per '
                             f'group), got {channels}')
        if groups is None:
            groups = default_groups(channels)
            if groups != PAPER_GROUPS and (channels, groups) not in _REPORTED:
                _REPORTED.add((channels, groups))
                logger.info('ShuffleAttention: the paper\'s %d groups do not divide %d / 2 channels; using %d '
                            'groups (the nearest divisor)', PAPER_GROUPS, channels, groups)
        self.groups = check_int('ShuffleAttention', 'groups', groups)
        if channels % (2 * groups) != 0:
            raise ValueError(f'ShuffleAttention: channels must be divisible by 2 * groups, got '
                             f'channels={channels}, groups={groups}')
        half = channels // (2 * groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)
        self.channel_gate = nn.Sigmoid()
        self.spatial_gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the per-group channel and spatial gates to ``x`` (B, C, H, W)."""
        check_input('ShuffleAttention', x, self.channels)
        b, c, h, w = x.shape
        x = x.reshape(b * self.groups, c // self.groups, h, w)  # [B*G, C/G, H, W]
        x0, x1 = x.chunk(2, dim=1)  # 2 x [B*G, C/2G, H, W]
        # The gates see batch-first (B, C/2, ...) tensors, so that their outputs read as maps.
        channel_logits = self.cweight * x0.mean(dim=(2, 3), keepdim=True) + self.cbias  # [B*G, C/2G, 1, 1]
        wc = self.channel_gate(channel_logits.reshape(b, c // 2, 1, 1)).reshape(x0.shape[0], -1, 1, 1)
        spatial_logits = self.sweight * self.gn(x1) + self.sbias  # [B*G, C/2G, H, W]
        ws = self.spatial_gate(spatial_logits.reshape(b, c // 2, h, w)).reshape(x1.shape)
        out = torch.cat([x0 * wc, x1 * ws], dim=1).reshape(b, c, h, w)  # [B, C, H, W]
        return channel_shuffle(out, 2)
