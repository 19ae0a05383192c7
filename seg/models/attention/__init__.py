"""The attention zoo: channel and spatial attention modules behind one interface.

Every module maps (B, C, H, W) to (B, C, H, W), is built as ``Module(channels, **options)``
and is registered in :data:`seg.registry.ATTENTION` under a short lowercase name; build one
with :func:`build_attention` (``build_attention('se', 64, reduction=8)`` or
``build_attention(dict(type='se', reduction=8), 64)``) and list the names with
:func:`list_attention`. The gates are the outputs of named submodules (``gate``,
``channel_gate``, ``spatial_gate``, ...), so forward hooks on them capture attention maps.

The context blocks of :mod:`seg.models.blocks` are plug-ins too (:mod:`.context`): ``'nonlocal'``,
``'criss_cross'`` (recurrent), ``'pam'``, ``'cam'`` and ``'dual'``; their attention maps are
recomputed from hooked query / key tensors instead (they are never built whole).
"""
from .cbam import CBAM
from .context import CAM, PAM, CrissCross, DualBlock, NonLocal
from .coord import CoordAttention
from .eca import ECA, eca_kernel_size
from .factory import build_attention, list_attention
from .gam import GAM
from .nam import NAM
from .s2mlpv2 import S2MLPv2
from .se import SE
from .shuffle import ShuffleAttention, channel_shuffle
from .simam import SimAM
from .sk import SK
from .soca import SOCA, covariance_pool, newton_schulz_sqrt

__all__ = [
    'CAM', 'CBAM', 'ECA', 'GAM', 'NAM', 'PAM', 'SE', 'SK', 'SOCA', 'CoordAttention', 'CrissCross',
    'DualBlock', 'NonLocal', 'S2MLPv2', 'ShuffleAttention', 'SimAM', 'build_attention', 'channel_shuffle',
    'covariance_pool', 'eca_kernel_size', 'list_attention', 'newton_schulz_sqrt',
]
