"""GCNet's head: the attention head with a global context block.

GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (Cao et al., 2019),
https://arxiv.org/abs/1904.11492
"""
from __future__ import annotations

from collections.abc import Sequence

from seg.registry import MODELS

from .attn_head import AttentionHead

__all__ = ['GCHead']


@MODELS.register_module()
def GCHead(in_channels: int, channels: int, num_classes: int, ratio: float = 1 / 4, pooling_type: str = 'att',
           fusion_types: Sequence[str] = ('channel_add',), in_index: int = -1, dropout: float = 0.1,
           norm: str = 'BN') -> AttentionHead:
    """conv 3x3 -> global context block -> conv 3x3 -> concat with the input -> conv 3x3 -> classifier.

    A preset of :class:`AttentionHead` with ``attention=dict(type='gc', ratio=..., pooling_type=...,
    fusion_types=...)`` (mmsegmentation's GCHead: its FCN head with two convolutions and the block
    after the first).
    """
    return AttentionHead(in_channels, channels, num_classes,
                         attention=dict(type='gc', ratio=ratio, pooling_type=pooling_type,
                                        fusion_types=fusion_types),
                         in_index=in_index, dropout=dropout, norm=norm)
