"""Decode heads: ``forward(feats: list[Tensor]) -> dict[str, Tensor]`` with at least ``'out'``.

:class:`AttentionHead` carries any module of the attention zoo; :func:`CCHead` and :func:`NLHead`
are its presets (configuration, not subclasses). :class:`DAHead` and :class:`FCNHead` have their
own shapes.
"""
from .attn_head import AttentionHead
from .cc_head import CCHead
from .da_head import DAHead
from .fcn_head import FCNHead
from .nl_head import NLHead

__all__ = ['AttentionHead', 'CCHead', 'DAHead', 'FCNHead', 'NLHead']
