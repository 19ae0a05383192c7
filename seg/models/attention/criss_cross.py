"""CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721

Recurrent criss-cross attention (RCCA): R passes of ``x <- gamma * cc_attention(q(x), k(x), v(x)) + x``
sharing one set of weights. One pass lets each pixel gather from the H + W - 1 pixels of its row
and column (one softmax over them, unscaled logits, the pixel itself counted once); after two
passes (the paper's R = 2) every pixel has received information from every other. Query and key
are 1x1 projections to ``C // reduction``, the value keeps C; gamma starts at 0, so the module
starts as the identity.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.ops import (
    criss_cross_attention,
    criss_cross_effective_map,
    criss_cross_pixel_map,
    criss_cross_weights,
)
from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int, check_reduction

__all__ = ['CrissCross']


@ATTENTION.register_module(name='criss_cross')
class CrissCross(AttentionModule):
    """Recurrent criss-cross attention: R passes of ``gamma * cc_attention(x) + x`` sharing weights.

    Args:
        channels: input (and output) channels C.
        recurrence: number of passes R (2 in the paper: then every pixel reaches every other).
        reduction: query / key width is ``C // reduction``.

    Parameters (independent of R): ``2 (C C/r + C/r) + C C + C + 1`` (query, key, value 1x1 convs
    with bias, gamma). The maps are recomputed from the ``query`` / ``key`` outputs, which their
    forward hooks see once per pass.
    """

    attention_maps = {'query': 'query', 'key': 'key'}
    residual = True

    @classmethod
    def param_count(cls, channels: int, recurrence: int = 2, reduction: int = 8) -> int:
        qk = channels // reduction
        return 2 * (channels * qk + qk) + channels * channels + channels + 1

    def __init__(self, channels: int, recurrence: int = 2, reduction: int = 8) -> None:
        super().__init__()
        self.channels = check_int('CrissCross', 'channels', channels)
        self.recurrence = check_int('CrissCross', 'recurrence', recurrence)
        qk = channels // check_reduction('CrissCross', channels, reduction)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def extra_repr(self) -> str:
        return f'recurrence={self.recurrence}'

    def forward(self, x: Tensor) -> Tensor:
        """Run the R criss-cross passes over ``x`` (B, C, H, W)."""
        check_input('CrissCross', x, self.channels)
        for _ in range(self.recurrence):
            x = self.gamma * criss_cross_attention(self.query(x), self.key(x), self.value(x)) + x
        return x

    def maps(self, records, locate=None):
        """Per pass, the point's criss-cross weights (``pass<r>``), and their composition over the R
        passes (``effective-R<R>``: where the point's output draws from)."""
        qs, ks = records.get('query') or [], records.get('key') or []
        if locate is None or not qs:
            return {}
        i, j = locate(*qs[0].shape[-2:])
        out = {f'pass{r}': AttentionMap('point', criss_cross_pixel_map(q, k, i, j)[0],
                                        f'criss-cross weights of pass {r}')
               for r, (q, k) in enumerate(zip(qs, ks), 1)}
        attns = [criss_cross_weights(q, k) for q, k in zip(qs, ks)]
        out[f'effective-R{len(attns)}'] = AttentionMap('point', criss_cross_effective_map(attns, i, j)[0],
                                                       f'effective map after R={len(attns)} passes', power=0.5)
        return out
