"""Non-local head.

Non-local Neural Networks (Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971
"""
from __future__ import annotations

from seg.models.blocks.non_local import NonLocal2d
from seg.models.heads.context_head import ContextHead
from seg.registry import MODELS


@MODELS.register_module()
class NLHead(ContextHead):
    """conv 3x3 -> non-local block -> conv 3x3 -> concat with the input -> conv 3x3 -> classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, reduction: int = 2,
                 mode: str = 'embedded_gaussian', use_scale: bool = True, in_index: int = -1,
                 dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__(in_channels, channels, num_classes,
                         NonLocal2d(channels, reduction, mode, use_scale, norm=norm),
                         in_index=in_index, dropout=dropout, norm=norm)
