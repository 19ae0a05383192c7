"""The attention zoo: every attention mechanism of ``seg`` behind one interface.

Each module maps (B, C, H, W) to (B, C, H, W), is built as ``Module(channels, **options)``, is
registered in :data:`seg.registry.ATTENTION` under a short lowercase name and declares what can be
looked at and counted (:class:`AttentionModule`). Build one with :func:`build_attention`
(``build_attention('se', 64, reduction=8)`` or ``build_attention(dict(type='se', reduction=8), 64)``),
list the names with :func:`list_attention`. The same class serves as a standalone module, as the
context of a decode head (:class:`seg.models.heads.AttentionHead`) and as a backbone plug-in
(:class:`seg.models.backbones.DilatedResNet` ``block_attention``).

A new module is one file here, plus one import line below.
"""
from .ann import AFNB, APNB
from .base import MAP_KINDS, AttentionModule, check_input, check_int, check_positive, check_reduction
from .cam import CAM
from .cbam import CBAM
from .coord import CoordAttention
from .criss_cross import CrissCross
from .dnl import DisentangledNonLocal
from .dual import DualBlock
from .eca import ECA, eca_kernel_size
from .ema import EMA
from .factory import build_attention, list_attention
from .gam import GAM
from .gc import GlobalContext
from .isa import ISA
from .nam import NAM
from .non_local import NonLocal
from .pam import PAM
from .s2mlpv2 import S2MLPv2
from .se import SE
from .shuffle import ShuffleAttention, channel_shuffle
from .simam import SimAM
from .sk import SK
from .soca import SOCA, covariance_pool, newton_schulz_sqrt

__all__ = [
    'AFNB', 'APNB', 'DisentangledNonLocal',
    'EMA', 'ISA',
    'GlobalContext',
    'CAM', 'CBAM', 'ECA', 'GAM', 'MAP_KINDS', 'NAM', 'PAM', 'SE', 'SK', 'SOCA', 'AttentionModule', 'CoordAttention',
    'CrissCross', 'DualBlock', 'NonLocal', 'S2MLPv2', 'ShuffleAttention', 'SimAM', 'build_attention',
    'channel_shuffle', 'check_input', 'check_int', 'check_positive', 'check_reduction', 'covariance_pool',
    'eca_kernel_size', 'list_attention', 'newton_schulz_sqrt',
]
