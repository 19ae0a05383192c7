"""CCNet head: recurrent criss-cross attention (RCCA).

CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721
"""
from __future__ import annotations

from seg.models.blocks import CrissCrossAttention
from seg.models.heads.context_head import ContextHead
from seg.registry import MODELS


@MODELS.register_module()
class CCHead(ContextHead):
    """conv 3x3 -> R criss-cross passes sharing weights -> conv 3x3 -> concat -> conv 3x3 -> classifier.

    Each pass is ``gamma * attention + input`` with gamma starting at 0; R = ``recurrence``
    (2 in the paper: two passes reach every pixel from every other).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, recurrence: int = 2,
                 reduction: int = 8, in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__(in_channels, channels, num_classes, CrissCrossAttention(channels, reduction),
                         repeats=recurrence, in_index=in_index, dropout=dropout, norm=norm)
        self.recurrence = recurrence
