"""The Non-local head: the attention head with a non-local block.

Non-local Neural Networks (Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971
"""
from __future__ import annotations

from seg.registry import MODELS

from .attn_head import AttentionHead

__all__ = ['NLHead']


@MODELS.register_module()
def NLHead(in_channels: int, channels: int, num_classes: int, reduction: int = 2,
           mode: str = 'embedded_gaussian', use_scale: bool = True, in_index: int = -1, dropout: float = 0.1,
           norm: str = 'BN') -> AttentionHead:
    """conv 3x3 -> non-local block -> conv 3x3 -> concat with the input -> conv 3x3 -> classifier.

    A preset of :class:`AttentionHead` with ``attention=dict(type='nonlocal', ...)``; the block's
    norm is the head's (mmsegmentation's NLHead).
    """
    return AttentionHead(in_channels, channels, num_classes,
                         attention=dict(type='nonlocal', reduction=reduction, mode=mode, use_scale=use_scale,
                                        norm=norm),
                         in_index=in_index, dropout=dropout, norm=norm)
