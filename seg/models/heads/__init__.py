"""Decode heads: ``forward(feats: list[Tensor]) -> dict[str, Tensor]`` with at least ``'out'``."""
from .cc_head import CCHead
from .context_head import ContextHead
from .fcn_head import FCNHead

__all__ = ['CCHead', 'ContextHead', 'FCNHead']
