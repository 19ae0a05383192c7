"""Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019), https://arxiv.org/abs/1809.02983
-- the channel attention module (CAM).

``out = gamma * softmax(max(E) - E) X + x`` with X the (C, N) features and ``E = X X^T`` (C x C),
gamma starting at 0. No projection: the only parameter is gamma.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.ops import channel_attention, channel_attention_weights
from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int

__all__ = ['CAM']


@ATTENTION.register_module(name='cam')
class CAM(AttentionModule):
    """DANet's channel attention ``gamma * softmax(max(E) - E) X + x``, ``E = X X^T`` over the pixels.

    Args:
        channels: input (and output) channels C.

    Parameters: 1 (gamma). The channel map is recomputed from the module's input.
    """

    attention_maps = {'': 'input'}
    residual = True

    @classmethod
    def param_count(cls, channels: int) -> int:
        return 1

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_int('CAM', 'channels', channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        """Add the channel-attention context to ``x`` (B, C, H, W)."""
        check_input('CAM', x, self.channels)
        return self.gamma * channel_attention(x) + x

    def maps(self, records, locate=None):
        """``channels``: the mean attention each channel receives, (C,)."""
        inputs = records.get('') or []
        if not inputs:
            return {}
        received = channel_attention_weights(inputs[-1])[0].mean(dim=0)  # [C]
        return {'channels': AttentionMap('channel', received, 'mean CAM attention each channel receives')}
