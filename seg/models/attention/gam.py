"""Global Attention Mechanism: Retain Information to Enhance Channel-Spatial Interactions
(Liu et al., 2021), https://arxiv.org/abs/2112.05561

Channel attention without pooling: every pixel's C-vector passes an MLP ``C -> C / r -> C``
(ReLU between), ``x1 = x * sigmoid(MLP(x))``. Spatial attention without pooling: two kxk
convolutions ``C -> C / r -> C``, each followed by BN (ReLU after the first),
``y = x1 * sigmoid(BN(conv(relu(BN(conv(x1))))))``. With ``groups > 1`` both convolutions are
grouped and a channel shuffle between them mixes the groups (the paper's variant for ResNet-50,
which keeps the parameter count down).
"""
from __future__ import annotations

from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int
from .shuffle import channel_shuffle


@ATTENTION.register_module(name='gam')
class GAM(AttentionModule):
    """Global attention mechanism (channel MLP, then convolutional spatial attention).

    Args:
        channels: input (and output) channels C, divisible by ``rate``.
        rate: reduction rate r of both sub-modules.
        spatial_kernel: odd kernel size k of the spatial convolutions.
        groups: groups of the spatial convolutions (must divide C and C / r); above 1 a channel
            shuffle follows the first one.

    Parameters: ``2 C^2 / r + C / r + C`` (MLP with biases) ``+ 2 k^2 C (C / r) / groups`` (bias-free
    convolutions) ``+ 2 C / r + 2 C`` (their BN). The maps are the outputs of the submodules
    ``channel_gate`` (B, C, H, W) and ``spatial_gate`` (B, C, H, W).
    """

    attention_maps = {'channel_gate': 'channel', 'spatial_gate': 'spatial'}
    conv_bn_pairs = (('conv1', 'bn1'), ('conv2', 'bn2'))  # folded for inference (seg.models.fuse)

    @classmethod
    def param_count(cls, channels: int, rate: int = 4, spatial_kernel: int = 7, groups: int = 1) -> int:
        mid = channels // rate
        mlp = 2 * channels * mid + mid + channels
        convs = 2 * spatial_kernel ** 2 * channels * mid // groups
        return mlp + convs + 2 * mid + 2 * channels

    def __init__(self, channels: int, rate: int = 4, spatial_kernel: int = 7, groups: int = 1) -> None:
        super().__init__()
        self.channels = check_int('GAM', 'channels', channels)
        check_int('GAM', 'rate', rate)
        check_int('GAM', 'spatial_kernel', spatial_kernel)
        self.groups = check_int('GAM', 'groups', groups)
        if channels % rate != 0:
            raise ValueError(f'GAM: channels must be divisible by rate, got channels={channels}, '
                             f'rate={rate}')
        mid = channels // rate
        if mid % groups != 0:
            raise ValueError(f'GAM: channels // rate must be divisible by groups, got channels={channels}, '
                             f'rate={rate}, groups={groups}')
        if spatial_kernel % 2 == 0:
            raise ValueError(f'GAM: spatial_kernel must be odd (same-size padding), got {spatial_kernel}')
        pad = spatial_kernel // 2
        self.mlp = nn.Sequential(nn.Linear(channels, mid), nn.ReLU(inplace=True), nn.Linear(mid, channels))
        self.channel_gate = nn.Sigmoid()
        self.conv1 = nn.Conv2d(channels, mid, spatial_kernel, padding=pad, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, channels, spatial_kernel, padding=pad, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.spatial_gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Refine ``x`` (B, C, H, W) along channels, then along space."""
        check_input('GAM', x, self.channels)
        att = self.mlp(x.permute(0, 2, 3, 1))  # [B, H, W, C]: MLP on each pixel's channels
        x = x * self.channel_gate(att.permute(0, 3, 1, 2))  # [B, C, H, W]
        y = self.act(self.bn1(self.conv1(x)))  # [B, C/r, H, W]
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        return x * self.spatial_gate(self.bn2(self.conv2(y)))  # [B, C, H, W]
