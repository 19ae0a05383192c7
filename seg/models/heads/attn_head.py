"""The attention head: any module of the attention zoo as the context of a decode head.

The head has CCNet's shape (CCNet: Criss-Cross Attention for Semantic Segmentation, Huang et al.,
ICCV 2019, https://arxiv.org/abs/1811.11721), which mmsegmentation's CCHead and NLHead share:
conv 3x3 -> attention module -> conv 3x3 -> concat with the head input -> conv 3x3 -> dropout ->
1x1 classifier. With the recurrent criss-cross module it is CCNet's head (:func:`CCHead`), with
the non-local block the Non-local head (:func:`NLHead`); the papers of the other modules are
listed in ``docs/attention.md``.
"""
from __future__ import annotations

from typing import Union

from torch import Tensor, nn

from seg.models.attention import build_attention
from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.models.norm import match_norm
from seg.registry import MODELS

__all__ = ['AttentionHead']


@MODELS.register_module()
class AttentionHead(nn.Module):
    """conv 3x3 -> ``context`` (the attention module) -> conv 3x3 -> concat -> conv 3x3 -> classifier.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of the head; the attention module is built for it.
        num_classes: number of classes of the logits.
        attention: the module, as a registered name (``'eca'``) or a config dict
            (``dict(type='criss_cross', recurrence=2)``); ``None`` means ``dict(type='se')``.
            See :func:`seg.models.attention.list_attention` for the names.
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the head's convolutions ('BN', 'SyncBN', ...); the BatchNorms the attention
            module builds itself follow it (:func:`seg.models.norm.match_norm`).

    Raises:
        ValueError: an unknown attention type (the message lists the valid ones), an option the
            module does not have, or a value it rejects for ``channels``.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int,
                 attention: Union[dict, str, None] = None, in_index: int = -1, dropout: float = 0.1,
                 norm: str = 'BN') -> None:
        super().__init__()
        if attention is None:
            attention = dict(type='se')
        self.attention_cfg = dict(attention) if isinstance(attention, dict) else dict(type=attention)
        self.in_index = in_index
        self.conv_in = ConvBNReLU(in_channels, channels, 3, norm=norm)
        self.context = match_norm(build_attention(attention, channels), norm)
        self.conv_out = ConvBNReLU(channels, channels, 3, norm=norm)
        self.bottleneck = ConvBNReLU(in_channels + channels, channels, 3, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def extra_repr(self) -> str:
        return f'attention={self.attention_cfg!r}'

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        out = self.conv_out(self.context(self.conv_in(x)))
        out = conv_of_concat(self.bottleneck, [x, out])
        return {'out': self.cls(out)}
