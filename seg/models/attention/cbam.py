"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018), https://arxiv.org/abs/1807.06521

Channel attention, then spatial attention, each multiplied onto the features:

- channel: ``Mc = sigmoid(MLP(avgpool_hw(x)) + MLP(maxpool_hw(x)))`` with one shared bias-free
  MLP ``C -> C // r -> C`` (ReLU between);
- spatial: ``Ms = sigmoid(conv_kxk([mean_c(x'); max_c(x')]))`` on the channel-refined x',
  a bias-free 2 -> 1 convolution with k = 7 by default.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int, check_reduction


class ChannelGate(nn.Module):
    """CBAM's channel attention map ``Mc``.

    Args:
        channels: channels C.
        reduction: ratio r of the shared MLP's hidden width ``C // r`` (>= 1).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """The channel weights of ``x`` (B, C, H, W), shape (B, C, 1, 1)."""
        b, c = x.shape[:2]
        pooled = torch.stack([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))])  # [2, B, C]: avg, max
        logits = self.fc2(self.act(self.fc1(pooled))).sum(dim=0)  # [B, C]: shared MLP, summed
        return self.gate(logits).view(b, c, 1, 1)  # [B, C, 1, 1]


class SpatialGate(nn.Module):
    """CBAM's spatial attention map ``Ms``.

    Args:
        kernel_size: odd size k of the bias-free 2 -> 1 convolution.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """The spatial weights of ``x`` (B, C, H, W), shape (B, 1, H, W)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # [B, 2, H, W]
        return self.gate(self.conv(pooled))  # [B, 1, H, W]


@ATTENTION.register_module(name='cbam')
class CBAM(AttentionModule):
    """Convolutional block attention: channel gate, then spatial gate.

    Args:
        channels: input (and output) channels C.
        reduction: ratio r of the shared channel MLP (hidden width ``C // r`` >= 1).
        spatial_kernel: odd size k of the spatial convolution.

    Parameters: ``2 * C * (C // r) + 2 * k * k``. The maps are the outputs of the submodules
    ``channel_gate`` (B, C, 1, 1) and ``spatial_gate`` (B, 1, H, W).
    """

    attention_maps = {'channel_gate': 'channel', 'spatial_gate': 'spatial'}

    @classmethod
    def param_count(cls, channels: int, reduction: int = 16, spatial_kernel: int = 7) -> int:
        return 2 * channels * (channels // reduction) + 2 * spatial_kernel ** 2

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.channels = check_int('CBAM', 'channels', channels)
        check_reduction('CBAM', channels, reduction)
        check_int('CBAM', 'spatial_kernel', spatial_kernel)
        if spatial_kernel % 2 == 0:
            raise ValueError(f'CBAM: spatial_kernel must be odd (same-size padding k // 2), '
                             f'got {spatial_kernel}')
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate(spatial_kernel)

    def forward(self, x: Tensor) -> Tensor:
        """Refine ``x`` (B, C, H, W) along channels, then along space."""
        check_input('CBAM', x, self.channels)
        x = x * self.channel_gate(x)  # [B, C, H, W]
        return x * self.spatial_gate(x)  # [B, C, H, W]
