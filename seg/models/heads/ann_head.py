"""The Asymmetric Non-local head: AFNB fuses stage 3 into stage 4, APNB adds pyramid self-attention.

Asymmetric Non-local Neural Networks for Semantic Segmentation (Zhu et al., ICCV 2019),
https://arxiv.org/abs/1908.07678
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from torch import Tensor, nn

from seg.models.attention import AFNB, APNB
from seg.models.layers import Classifier, ConvBNReLU
from seg.registry import MODELS

__all__ = ['ANNHead']


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 \
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f'ANNHead: {name} must be an integer or a (low, high) pair of integers, got {value!r}')


@MODELS.register_module()
class ANNHead(nn.Module):
    """AFNB(low, high) -> dropout -> conv 3x3 -> APNB -> classifier (mmsegmentation's ANNHead).

    Args:
        in_channels: channels of the (low, high) features, stage 3 and stage 4 (``(1024, 2048)`` on a
            ResNet-50); an int: one feature serving as both.
        channels: width of the head after the fusion (512), APNB's width.
        num_classes: number of classes of the logits.
        project_channels: the key / query / value width of both blocks; ``None``: ``channels // 2``
            (mmsegmentation's configs: 256 for 512).
        query_scales: the blocks' query scales (one attention stage each, summed).
        key_pool_scales: the pyramid of the blocks' keys.
        in_index: which backbone features are (low, high); an int: one feature serving as both.
        dropout: dropout probability after the fusion and before the classifier.
        norm: norm of every convolution ('BN', 'SyncBN', ...).

    Raises:
        ValueError: ``in_channels`` / ``in_index`` not an int or a pair, or an option a block rejects.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    @classmethod
    def skeleton_inputs(cls, decode_head: dict, auxiliary_head: dict | None) -> dict:
        """The low-level feature is the auxiliary head's (stage 3), the high-level one the decode head's
        (stage 4): the model factory builds ANN on any backbone preset this way."""
        if not auxiliary_head:
            return {}
        return dict(in_channels=(auxiliary_head['in_channels'], decode_head['in_channels']),
                    in_index=(auxiliary_head.get('in_index', 2), decode_head.get('in_index', 3)))

    def __init__(self, in_channels: Union[int, Sequence[int]], channels: int, num_classes: int,
                 project_channels: int | None = None, query_scales: Sequence[int] = (1,),
                 key_pool_scales: Sequence[int] = (1, 3, 6, 8), in_index: Union[int, Sequence[int]] = (2, 3),
                 dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        low, high = _pair('in_channels', in_channels)
        self.in_index = _pair('in_index', in_index)
        if project_channels is None:
            project_channels = max(1, channels // 2)
        self.fusion = AFNB(low, high, project_channels, high, query_scales, key_pool_scales, norm=norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.bottleneck = ConvBNReLU(high, channels, 3, norm=norm)
        self.context = APNB(channels, project_channels, query_scales, key_pool_scales, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        low, high = feats[self.in_index[0]], feats[self.in_index[1]]
        out = self.bottleneck(self.dropout(self.fusion(low, high)))
        return {'out': self.cls(self.context(out))}
