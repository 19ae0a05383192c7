"""Decode heads: ``forward(feats: list[Tensor]) -> dict[str, Tensor]`` with at least ``'out'``."""
from .attn_head import AttentionHead
from .cc_head import CCHead
from .context_head import ContextHead
from .da_head import DAHead
from .fcn_head import FCNHead
from .nl_head import NLHead

__all__ = ['AttentionHead', 'CCHead', 'ContextHead', 'DAHead', 'FCNHead', 'NLHead']
