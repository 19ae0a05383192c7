"""Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019), https://arxiv.org/abs/1809.02983
-- the position attention module (PAM).

``out_p = gamma * sum_n softmax_n(q_p . k_n) v_n + x_p`` over all N pixels, with q, k 1x1
projections to ``C // reduction`` (8 in the paper), v keeping C, no 1/sqrt(d) scale and gamma
starting at 0. The N x N attention is never held whole (:func:`seg.ops.position_attention`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.ops import position_attention, position_attention_row
from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int, check_reduction

__all__ = ['PAM']


@ATTENTION.register_module(name='pam')
class PAM(AttentionModule):
    """DANet's position attention ``gamma * sum_j softmax_j(q_i . k_j) v_j + x`` over all pixels.

    Args:
        channels: input (and output) channels C.
        reduction: query / key width is ``C // reduction`` (8 in the paper).

    Parameters: ``2 (C C/r + C/r) + C C + C + 1`` (query, key, value 1x1 convs with bias, gamma).
    A point's attention row is recomputed from the ``query`` / ``key`` outputs.
    """

    attention_maps = {'query': 'query', 'key': 'key'}
    residual = True

    @classmethod
    def param_count(cls, channels: int, reduction: int = 8) -> int:
        qk = channels // reduction
        return 2 * (channels * qk + qk) + channels * channels + channels + 1

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.channels = check_int('PAM', 'channels', channels)
        qk = channels // check_reduction('PAM', channels, reduction)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        """Add the position-attention context to ``x`` (B, C, H, W)."""
        check_input('PAM', x, self.channels)
        return self.gamma * position_attention(self.query(x), self.key(x), self.value(x), scale=1.0) + x

    def maps(self, records, locate=None):
        """The point's row of the attention matrix, per call (named ``''``, or ``call<n>`` for several)."""
        qs, ks = records.get('query') or [], records.get('key') or []
        if locate is None or not qs:
            return {}
        return {('' if len(qs) == 1 else f'call{n}'): AttentionMap(
                    'point', position_attention_row(q, k, *locate(*q.shape[-2:]))[0], 'attention row')
                for n, (q, k) in enumerate(zip(qs, ks), 1)}
