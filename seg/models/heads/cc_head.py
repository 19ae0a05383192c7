"""CCNet's head: the attention head with recurrent criss-cross attention (RCCA).

CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721
"""
from __future__ import annotations

from seg.registry import MODELS

from .attn_head import AttentionHead

__all__ = ['CCHead']


@MODELS.register_module()
def CCHead(in_channels: int, channels: int, num_classes: int, recurrence: int = 2, reduction: int = 8,
           in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> AttentionHead:
    """conv 3x3 -> R criss-cross passes sharing weights -> conv 3x3 -> concat -> conv 3x3 -> classifier.

    A preset of :class:`AttentionHead` with ``attention=dict(type='criss_cross', recurrence=R,
    reduction=r)``; R = 2 in the paper (two passes reach every pixel from every other).
    """
    return AttentionHead(in_channels, channels, num_classes,
                         attention=dict(type='criss_cross', recurrence=recurrence, reduction=reduction),
                         in_index=in_index, dropout=dropout, norm=norm)
