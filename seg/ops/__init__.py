"""Attention ops as pure functions, each fast path beside an obviously-correct reference.

* criss-cross attention (CCNet): :func:`criss_cross_attention`;
* position attention over all pixels (DANet PAM, non-local): :func:`position_attention`;
* channel attention (DANet CAM): :func:`channel_attention`.

The fast paths are exact (equal to their ``*_reference`` up to rounding, gradients
included); ``docs/benchmarks.md`` records their speed and memory.
"""
from .channel_attention import channel_attention, channel_attention_reference
from .criss_cross import (
    CRISS_CROSS_BACKENDS,
    criss_cross_attention,
    criss_cross_attention_einsum,
    criss_cross_attention_lse,
    criss_cross_attention_reference,
    set_criss_cross_backend,
)
from .self_attention import (
    POSITION_ATTENTION_BACKENDS,
    position_attention,
    position_attention_chunked,
    position_attention_reference,
    position_attention_sdpa,
    set_position_attention_backend,
)

__all__ = [
    'CRISS_CROSS_BACKENDS',
    'POSITION_ATTENTION_BACKENDS',
    'channel_attention',
    'channel_attention_reference',
    'criss_cross_attention',
    'criss_cross_attention_einsum',
    'criss_cross_attention_lse',
    'criss_cross_attention_reference',
    'position_attention',
    'position_attention_chunked',
    'position_attention_reference',
    'position_attention_sdpa',
    'set_criss_cross_backend',
    'set_position_attention_backend',
]
