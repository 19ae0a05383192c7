"""Attention ops as pure functions, each fast path beside an obviously-correct reference."""
from .criss_cross import criss_cross_attention, criss_cross_attention_reference

__all__ = ['criss_cross_attention', 'criss_cross_attention_reference']
