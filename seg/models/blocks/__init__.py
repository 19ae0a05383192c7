"""Context blocks over `seg.ops` (criss-cross, position / channel attention, non-local)."""
from .criss_cross import CrissCrossAttention, RecurrentCrissCross
from .dual_attention import ChannelAttention, DualAttention, PositionAttention
from .non_local import NonLocal2d

__all__ = ['ChannelAttention', 'CrissCrossAttention', 'DualAttention', 'NonLocal2d', 'PositionAttention',
           'RecurrentCrissCross']
