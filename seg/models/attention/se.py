"""Squeeze-and-Excitation Networks (Hu et al., CVPR 2018), https://arxiv.org/abs/1709.01507

Squeeze: global average pooling to one value per channel. Excitation: a bottleneck MLP
``C -> C // r -> C`` (bias-free, ReLU between) and a sigmoid give one weight per channel, which
rescales the input: ``y = x * sigmoid(W2 relu(W1 mean_hw(x)))``.
"""
from __future__ import annotations

from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int, check_reduction


@ATTENTION.register_module(name='se')
class SE(AttentionModule):
    """Squeeze-and-excitation channel attention.

    Args:
        channels: input (and output) channels C.
        reduction: bottleneck ratio r; the hidden width is ``C // r`` (must be >= 1).

    Parameters: ``2 * C * (C // r)`` (two bias-free linear layers).
    The channel weights are the output of the submodule ``gate``.
    """

    attention_maps = {'gate': 'channel'}

    @classmethod
    def param_count(cls, channels: int, reduction: int = 16) -> int:
        return 2 * channels * (channels // reduction)

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channels = check_int('SE', 'channels', channels)
        self.reduction = check_reduction('SE', channels, reduction)
        hidden = channels // reduction
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Rescale the channels of ``x`` (B, C, H, W) by their excitation weights."""
        check_input('SE', x, self.channels)
        b, c = x.shape[:2]
        s = x.mean(dim=(2, 3))  # [B, C]
        w = self.gate(self.fc2(self.act(self.fc1(s))))  # [B, C]
        return x * w.view(b, c, 1, 1)  # [B, C, 1, 1] broadcast over [B, C, H, W]
