"""The Disentangled Non-local head: the attention head with a disentangled non-local block.

Disentangled Non-Local Neural Networks (Yin et al., ECCV 2020), https://arxiv.org/abs/2006.06668
"""
from __future__ import annotations

from seg.registry import MODELS

from .attn_head import AttentionHead

__all__ = ['DNLHead']


@MODELS.register_module()
def DNLHead(in_channels: int, channels: int, num_classes: int, reduction: int = 2, use_scale: bool = True,
            mode: str = 'embedded_gaussian', temperature: float = 0.05, in_index: int = -1,
            dropout: float = 0.1, norm: str = 'BN') -> AttentionHead:
    """conv 3x3 -> disentangled non-local block -> conv 3x3 -> concat with the input -> conv 3x3 ->
    classifier.

    A preset of :class:`AttentionHead` with ``attention=dict(type='dnl', ...)``; the block's norm is
    the head's (mmsegmentation's DNLHead, which has NLHead's shape).
    """
    return AttentionHead(in_channels, channels, num_classes,
                         attention=dict(type='dnl', reduction=reduction, mode=mode, use_scale=use_scale,
                                        temperature=temperature, norm=norm),
                         in_index=in_index, dropout=dropout, norm=norm)
