"""Decode heads: ``forward(feats: list[Tensor]) -> dict[str, Tensor]`` with at least ``'out'``.

:class:`AttentionHead` carries any module of the attention zoo; :func:`CCHead`, :func:`NLHead`,
:func:`GCHead` and :func:`DNLHead` are its presets (configuration, not subclasses: mmsegmentation's
heads of that shape). The other heads of mmsegmentation have their own shapes: :class:`FCNHead`,
:class:`DAHead`, the pyramids :class:`PSPHead`, :class:`ASPPHead`, :class:`APCHead`, :class:`DMHead`,
and the attention heads :class:`OCRHead` (with its FCN stage inside), :class:`EMAHead`,
:class:`ISAHead`, :class:`ANNHead`, :class:`PSAHead`, which use the zoo's modules where the
mechanism is one (``ema``, ``isa``, ``apnb``).
"""
from .ann_head import ANNHead
from .apc_head import APCHead
from .aspp_head import ASPPHead
from .attn_head import AttentionHead
from .cc_head import CCHead
from .da_head import DAHead
from .dm_head import DMHead
from .dnl_head import DNLHead
from .ema_head import EMAHead
from .fcn_head import FCNHead
from .gc_head import GCHead
from .isa_head import ISAHead
from .nl_head import NLHead
from .ocr_head import OCRHead
from .psa_head import PSAHead
from .psp_head import PSPHead

__all__ = ['PSAHead', 'ANNHead', 'DNLHead', 'EMAHead', 'ISAHead', 'GCHead', 'OCRHead',
           'APCHead', 'ASPPHead', 'DMHead', 'PSPHead', 'AttentionHead', 'CCHead', 'DAHead', 'FCNHead', 'NLHead']
