"""GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (Cao et al., 2019),
https://arxiv.org/abs/1904.11492

The global context (GC) block: one query-independent context vector per image, transformed by a
bottleneck and fused into every position,

``z_i = x_i + W_v2 ReLU(LN(W_v1 sum_j alpha_j x_j))``, ``alpha = softmax_j(W_k x_j)``

(context modelling by attention pooling, ``'att'``, or by global average pooling, ``'avg'``; fusion
by broadcast addition, ``'channel_add'``, and / or by a sigmoid channel gate, ``'channel_mul'``,
applied first). The bottleneck is ``C -> int(C * ratio) -> C`` 1x1 convolutions with a LayerNorm
over the bottleneck's channels before the ReLU. The last convolution of each fusion starts at zero,
as in mmcv's ``ContextBlock``: with ``'channel_add'`` the block starts as the identity; a
``'channel_mul'`` gate starts at ``sigmoid(0) = 1/2``. The pooling weights alpha are a spatial map,
one weight per position summing to 1: what :meth:`GlobalContext.maps` draws.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int, check_positive

__all__ = ['FUSION_TYPES', 'POOLING_TYPES', 'GlobalContext']

POOLING_TYPES = ('att', 'avg')
FUSION_TYPES = ('channel_add', 'channel_mul')


def _bottleneck(channels: int, planes: int) -> nn.Sequential:
    """1x1 conv C -> P, LayerNorm over (P, 1, 1), ReLU, 1x1 conv P -> C (starting at zero)."""
    transform = nn.Sequential(nn.Conv2d(channels, planes, 1), nn.LayerNorm([planes, 1, 1]), nn.ReLU(inplace=True),
                              nn.Conv2d(planes, channels, 1))
    nn.init.zeros_(transform[-1].weight)
    nn.init.zeros_(transform[-1].bias)
    return transform


@ATTENTION.register_module(name='gc')
class GlobalContext(AttentionModule):
    """Global context block: pool one context vector, transform it, fuse it into every position.

    Args:
        channels: input (and output) channels C.
        ratio: the bottleneck width is ``int(C * ratio)`` (1/4 in mmsegmentation's GCHead, 1/16 in
            the paper's backbone blocks).
        pooling_type: ``'att'`` (attention pooling, softmax over positions of a 1x1 conv) or ``'avg'``.
        fusion_types: a non-empty subset of ``('channel_add', 'channel_mul')``.

    Parameters (P = int(C * ratio)): ``C`` for ``'att'`` pooling (the 1x1 mask conv; its bias,
    which the softmax ignores, is a buffer), plus ``2 C P + 3 P + C`` per fusion (two 1x1 convs
    with bias and the LayerNorm). The map is recomputed from the mask convolution's output (the
    key, ``conv_mask``).
    """

    attention_maps = {'conv_mask': 'key'}
    residual = True  # with the default 'channel_add' fusion, zero at the start

    @classmethod
    def param_count(cls, channels: int, ratio: float = 1 / 4, pooling_type: str = 'att',
                    fusion_types: Sequence[str] = ('channel_add',)) -> int:
        planes = int(channels * ratio)
        pool = channels if pooling_type == 'att' else 0
        return pool + len(set(fusion_types)) * (2 * channels * planes + 3 * planes + channels)

    def __init__(self, channels: int, ratio: float = 1 / 4, pooling_type: str = 'att',
                 fusion_types: Sequence[str] = ('channel_add',)) -> None:
        super().__init__()
        self.channels = check_int('GlobalContext', 'channels', channels)
        ratio = check_positive('GlobalContext', 'ratio', ratio)
        planes = int(channels * ratio)
        if planes < 1:
            raise ValueError(f'GlobalContext: ratio must make int(channels * ratio) >= 1, got ratio={ratio!r} '
                             f'for channels={channels}')
        if pooling_type not in POOLING_TYPES:
            raise ValueError(f"GlobalContext: pooling_type must be one of {', '.join(POOLING_TYPES)}, "
                             f'got {pooling_type!r}')
        if isinstance(fusion_types, str) or not isinstance(fusion_types, Sequence):
            raise ValueError(f'GlobalContext: fusion_types must be a sequence of names, e.g. '
                             f"('channel_add',), got {fusion_types!r}")
        bad = [f for f in fusion_types if f not in FUSION_TYPES]
        if not fusion_types or bad or len(set(fusion_types)) != len(fusion_types):
            raise ValueError(f"GlobalContext: fusion_types must be a non-empty subset of {', '.join(FUSION_TYPES)} "
                             f'without repeats, got {tuple(fusion_types)!r}')
        self.ratio, self.planes, self.pooling_type = ratio, planes, pooling_type
        self.fusion_types = tuple(fusion_types)
        if pooling_type == 'att':
            self.conv_mask = nn.Conv2d(channels, 1, 1, bias=False)
            nn.init.kaiming_normal_(self.conv_mask.weight, mode='fan_in', nonlinearity='relu')
            # Its bias shifts every logit alike, which the softmax over positions ignores: no gradient
            # ever reaches it. A buffer, not a parameter that never trains; kept for mmcv's key layout.
            del self.conv_mask.bias
            self.conv_mask.register_buffer('bias', torch.zeros(1))
        if 'channel_mul' in self.fusion_types:
            self.channel_mul = _bottleneck(channels, planes)
        if 'channel_add' in self.fusion_types:
            self.channel_add = _bottleneck(channels, planes)

    def extra_repr(self) -> str:
        return f'planes={self.planes}, pooling_type={self.pooling_type!r}, fusion_types={self.fusion_types!r}'

    def forward(self, x: Tensor) -> Tensor:
        """Fuse the global context of ``x`` (B, C, H, W) into every position."""
        check_input('GlobalContext', x, self.channels)
        if self.pooling_type == 'att':
            logits = self.conv_mask(x).flatten(2)  # [B, 1, N]
            weights = torch.softmax(logits.float(), dim=-1).to(x.dtype)
            context = torch.matmul(x.flatten(2), weights.transpose(1, 2)).unsqueeze(-1)  # [B, C, 1, 1]
        else:
            context = x.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        out = x
        if 'channel_mul' in self.fusion_types:
            out = out * torch.sigmoid(self.channel_mul(context))
        if 'channel_add' in self.fusion_types:
            out = out + self.channel_add(context)
        return out

    def maps(self, records, locate=None):
        """The attention-pooling weights ``alpha`` (``'context'``: softmax over the positions, summing
        to 1); none for ``'avg'`` pooling, whose weights are uniform."""
        masks = records.get('conv_mask') or []
        if not masks:
            return {}
        logits = masks[-1][0, 0]  # [H, W]
        weights = torch.softmax(logits.flatten().float(), dim=0).view_as(logits)
        return {'context': AttentionMap('spatial', weights, 'global context pooling weights (softmax over positions)')}
