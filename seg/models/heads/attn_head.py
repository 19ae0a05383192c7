"""Attention head: any module of the attention zoo as the context module of a decode head.

The head has CCNet's shape (CCNet: Criss-Cross Attention for Semantic Segmentation, Huang et al.,
ICCV 2019, https://arxiv.org/abs/1811.11721) with the criss-cross module swapped for a module
built by :func:`seg.models.attention.build_attention`: conv 3x3 -> attention -> conv 3x3 ->
concat with the head input -> conv 3x3 -> dropout -> 1x1 classifier. The papers of the modules
are listed in ``docs/attention.md``.
"""
from __future__ import annotations

from typing import Union

from seg.models.attention import build_attention
from seg.models.heads.context_head import ContextHead
from seg.registry import MODELS


@MODELS.register_module()
class AttentionHead(ContextHead):
    """A :class:`ContextHead` whose context module is an attention module of the zoo.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of the head; the attention module is built for it.
        num_classes: number of classes of the logits.
        attention: the module, as a registered name (``'eca'``) or a config dict
            (``dict(type='shuffle', groups=64)``); ``None`` means ``dict(type='se')``.
            See :func:`seg.models.attention.list_attention` for the names.
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the head's convolutions ('BN', 'SyncBN', ...).

    Raises:
        ValueError: an unknown attention type (the message lists the valid ones), an option the
            module does not have, or a value it rejects for ``channels`` (e.g. ShuffleAttention's
            ``groups`` must divide ``channels / 2``).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int,
                 attention: Union[dict, str, None] = None, in_index: int = -1, dropout: float = 0.1,
                 norm: str = 'BN') -> None:
        if attention is None:
            attention = dict(type='se')
        context = build_attention(attention, channels)
        super().__init__(in_channels, channels, num_classes, context, repeats=1, in_index=in_index,
                         dropout=dropout, norm=norm)
        self.attention_cfg = dict(attention) if isinstance(attention, dict) else dict(type=attention)

    def extra_repr(self) -> str:
        return f'attention={self.attention_cfg!r}'
