"""Non-local Neural Networks (Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971

``z = x + norm(W_z y)``, ``y_p = 1/C(x) sum_n f(x_p, x_n) g(x_n)`` over all N pixels, with g, theta,
phi 1x1 embeddings to ``C // reduction`` (2 in the paper) and the pairwise function f:

* ``embedded_gaussian``: ``softmax_n(theta_p . phi_n)``, scaled by ``1 / sqrt(C // reduction)`` when
  ``use_scale`` (mmsegmentation's default);
* ``gaussian``: ``softmax_n(x_p . x_n)``, no embedding;
* ``dot_product``: ``theta_p . phi_n / N``;
* ``concatenation``: ``relu(w^T [theta_p, phi_n]) / N``.

The norm after ``W_z`` starts at zero (its scale, or ``W_z`` itself without a norm), so the block
starts as the identity. The N x N matrix is never held whole (:mod:`seg.ops`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seg.models.norm import NORMS, build_norm
from seg.ops import (
    concatenation_attention,
    dot_product_attention,
    nonlocal_pairwise_row,
    position_attention,
    position_attention_row,
)
from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int, check_reduction

__all__ = ['MODES', 'NonLocal']

MODES = ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation')


@ATTENTION.register_module(name='nonlocal')
class NonLocal(AttentionModule):
    """Non-local block ``z = x + norm(W_z y)``, ``y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)``.

    Args:
        channels: input (and output) channels C.
        reduction: the embedding width is ``C // reduction`` (2 in the paper).
        mode: the pairwise function: ``'embedded_gaussian'`` (default), ``'gaussian'``,
            ``'dot_product'`` or ``'concatenation'``.
        use_scale: scale the embedded-Gaussian logits by ``1 / sqrt(C // reduction)``.
        norm: the norm after ``W_z``: ``'BN'``, ``'SyncBN'``, ``'GN'`` or ``'none'``.
        query_chunk: queries per chunk of the ``'concatenation'`` mode (bounds its memory).

    Parameters (Ci = C // r): ``3 (C Ci + Ci) + C Ci + 2 C`` with a norm (``W_z`` bias-free), plus
    ``2 Ci`` for ``'concatenation'``; ``'gaussian'`` has no theta / phi. A point's pairwise weights
    are recomputed from the module's input.
    """

    attention_maps = {'': 'input'}
    residual = True
    conv_bn_pairs = (('conv_out', 'norm'),)  # folded for inference (seg.models.fuse)

    @classmethod
    def param_count(cls, channels: int, reduction: int = 2, mode: str = 'embedded_gaussian',
                    use_scale: bool = True, norm: str = 'BN', query_chunk: int = 1024) -> int:
        ci = channels // reduction
        embeds = 1 if mode == 'gaussian' else 3
        out = ci * channels + (channels if norm == 'none' else 2 * channels)
        return embeds * (channels * ci + ci) + out + (2 * ci if mode == 'concatenation' else 0)

    def __init__(self, channels: int, reduction: int = 2, mode: str = 'embedded_gaussian',
                 use_scale: bool = True, norm: str = 'BN', query_chunk: int = 1024) -> None:
        super().__init__()
        self.channels = check_int('NonLocal', 'channels', channels)
        inter = channels // check_reduction('NonLocal', channels, reduction)
        if mode not in MODES:
            raise ValueError(f"NonLocal: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(use_scale, bool):
            raise ValueError(f'NonLocal: use_scale must be a bool, got {use_scale!r}')
        if norm not in NORMS:
            raise ValueError(f"NonLocal: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.query_chunk = check_int('NonLocal', 'query_chunk', query_chunk)
        self.mode, self.use_scale, self.inter = mode, use_scale, inter
        self.g = nn.Conv2d(channels, inter, 1)
        if mode != 'gaussian':
            self.theta = nn.Conv2d(channels, inter, 1)
            self.phi = nn.Conv2d(channels, inter, 1)
        if mode == 'concatenation':
            # w^T [theta_i, phi_j] = w_theta . theta_i + w_phi . phi_j
            self.concat_project = nn.Conv2d(2 * inter, 1, 1, bias=False)
        self.conv_out = nn.Conv2d(inter, channels, 1, bias=norm == 'none')
        self.norm = build_norm(norm, channels)
        if isinstance(self.norm, nn.Identity):
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        else:
            nn.init.zeros_(self.norm.weight)

    def extra_repr(self) -> str:
        return f'mode={self.mode!r}, inter={self.inter}'

    def forward(self, x: Tensor) -> Tensor:
        """Add the non-local response to ``x`` (B, C, H, W)."""
        check_input('NonLocal', x, self.channels)
        g = self.g(x)  # [B, Ci, H, W]
        if self.mode == 'gaussian':
            y = position_attention(x, x, g, scale=1.0)
        elif self.mode == 'embedded_gaussian':
            scale = 1.0 / math.sqrt(self.inter) if self.use_scale else 1.0
            y = position_attention(self.theta(x), self.phi(x), g, scale=scale)
        elif self.mode == 'dot_product':
            y = dot_product_attention(self.theta(x), self.phi(x), g)
        else:
            y = concatenation_attention(self.theta(x), self.phi(x), g, self.concat_project.weight.view(2, -1),
                                        self.query_chunk)
        return x + self.norm(self.conv_out(y))

    def maps(self, records, locate=None):
        """The point's pairwise weights ``f(x_p, x_n) / C(x)`` (named ``''``): softmax rows for the Gaussian
        modes, ``theta_p . phi_n / N`` (may be negative) or ``relu(...) / N`` for the others."""
        inputs = records.get('') or []
        if locate is None or not inputs:
            return {}
        x = inputs[-1].to(self.g.weight)
        i, j = locate(*x.shape[-2:])
        with torch.no_grad():
            if self.mode == 'gaussian':
                row = position_attention_row(x, x, i, j)
            elif self.mode == 'embedded_gaussian':
                scale = 1.0 / math.sqrt(self.inter) if self.use_scale else 1.0
                row = position_attention_row(self.theta(x), self.phi(x), i, j, scale)
            else:
                weight = self.concat_project.weight.view(2, -1) if self.mode == 'concatenation' else None
                row = nonlocal_pairwise_row(self.mode, self.theta(x), self.phi(x), i, j, weight)
        return {'': AttentionMap('point', row[0], f'{self.mode} pairwise weights')}
