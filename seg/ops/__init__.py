"""Attention ops as pure functions, each fast path beside an obviously-correct reference.

* criss-cross attention (CCNet): :func:`criss_cross_attention`;
* position attention over all pixels (DANet PAM, non-local): :func:`position_attention`;
* channel attention (DANet CAM): :func:`channel_attention`;
* PSANet's point-wise spatial attention: mmcv's PSAMask (:func:`psa_mask`) and the aggregation it
  feeds, without the N x N buffer (:func:`psa_attention`);
* the non-local pairwise forms that are not a softmax: :func:`dot_product_attention`,
  :func:`concatenation_attention`.

Beside each op are the functions that compute its attention weights (:func:`criss_cross_weights`,
:func:`position_attention_row`, :func:`channel_attention_weights`, ...): the attention modules
and the visualiser use them, so the maths is written once.

The fast paths are exact (equal to their ``*_reference`` up to rounding, gradients
included); ``docs/benchmarks.md`` records their speed and memory.
"""
from .channel_attention import channel_attention, channel_attention_reference, channel_attention_weights
from .criss_cross import (
    CRISS_CROSS_BACKENDS,
    criss_cross_attention,
    criss_cross_attention_einsum,
    criss_cross_attention_lse,
    criss_cross_attention_reference,
    criss_cross_effective_map,
    criss_cross_pixel_map,
    criss_cross_pixel_weights,
    criss_cross_positions,
    criss_cross_propagate,
    criss_cross_weights,
    set_criss_cross_backend,
)
from .non_local import (
    concatenation_attention,
    concatenation_attention_reference,
    dot_product_attention,
    dot_product_attention_reference,
    nonlocal_pairwise_row,
)
from .psa_mask import (
    PSA_TYPES,
    psa_attention,
    psa_attention_reference,
    psa_attention_weights,
    psa_mask,
    psa_mask_reference,
)
from .self_attention import (
    POSITION_ATTENTION_BACKENDS,
    position_attention,
    position_attention_chunked,
    position_attention_reference,
    position_attention_row,
    position_attention_sdpa,
    set_position_attention_backend,
)

__all__ = [
    'PSA_TYPES', 'psa_attention', 'psa_attention_reference', 'psa_attention_weights', 'psa_mask',
    'psa_mask_reference',
    'CRISS_CROSS_BACKENDS', 'POSITION_ATTENTION_BACKENDS', 'channel_attention', 'channel_attention_reference',
    'channel_attention_weights', 'concatenation_attention', 'concatenation_attention_reference',
    'criss_cross_attention', 'criss_cross_attention_einsum', 'criss_cross_attention_lse',
    'criss_cross_attention_reference', 'criss_cross_effective_map', 'criss_cross_pixel_map',
    'criss_cross_pixel_weights', 'criss_cross_positions', 'criss_cross_propagate', 'criss_cross_weights',
    'dot_product_attention', 'dot_product_attention_reference', 'nonlocal_pairwise_row', 'position_attention',
    'position_attention_chunked', 'position_attention_reference', 'position_attention_row',
    'position_attention_sdpa', 'set_criss_cross_backend', 'set_position_attention_backend',
]
