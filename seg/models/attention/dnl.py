"""Disentangled Non-Local Neural Networks (Yin et al., ECCV 2020), https://arxiv.org/abs/2006.06668

The non-local response split in two terms that learn different things:

* the whitened pairwise term: the non-local pairwise function of the query and key embeddings
  *minus their means over the positions* (``theta_p - mu_theta``, ``phi_n - mu_phi``), which then
  models how pixels relate to each other (within-region clues) instead of a saliency shared by all;
  for ``embedded_gaussian`` a softmax of ``(theta_p - mu_theta) . (phi_n - mu_phi)`` scaled by
  ``1 / sqrt(C // reduction)`` (``use_scale``) and divided by ``temperature`` (0.05, sharpening);
* the unary term: one weight per position, ``softmax_n(w_m . x_n + b_m)`` (a 1x1 ``conv_mask``),
  the same for every query (what is salient, e.g. boundaries).

``z = x + norm(W_z (sum_n pairwise(p, n) g_n + sum_n unary(n) g_n))``, with mmsegmentation's
``reduction``, ``mode`` (the pairwise function, as the non-local block's) and output conv / norm, the
norm starting at zero so that the block starts as the identity. Whitening is a per-image shift of q
and k and the temperature a factor on the logits, so the pairwise term is
:func:`seg.ops.position_attention` (never N x N).
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

from .base import AttentionMap, AttentionModule, check_input, check_int, check_positive, check_reduction
from .non_local import MODES

__all__ = ['DisentangledNonLocal', 'whiten']


def whiten(x: Tensor) -> Tensor:
    """``x`` (B, C, H, W) minus its mean over the positions, per image and channel."""
    return x - x.mean(dim=(2, 3), keepdim=True)


@ATTENTION.register_module(name='dnl')
class DisentangledNonLocal(AttentionModule):
    """Disentangled non-local block: ``x + norm(W_z (whitened pairwise(x) g + unary(x) g))``.

    Args:
        channels: input (and output) channels C.
        reduction: the embedding width is ``C // reduction`` (2 in mmsegmentation's DNLNet).
        mode: the pairwise function, as :class:`~seg.models.attention.NonLocal`'s:
            ``'embedded_gaussian'`` (the paper's), ``'gaussian'``, ``'dot_product'`` or ``'concatenation'``;
            each is applied to the whitened embeddings (the input itself for ``'gaussian'``).
        use_scale: scale the embedded-Gaussian logits by ``1 / sqrt(C // reduction)``.
        temperature: divides the embedded-Gaussian logits (0.05: a sharper softmax). The other
            modes have none (as in mmsegmentation).
        norm: the norm after ``W_z``: ``'BN'``, ``'SyncBN'``, ``'GN'`` or ``'none'``.
        query_chunk: queries per chunk of the ``'concatenation'`` mode (bounds its memory).

    Parameters (Ci = C // r): the non-local block's ``3 (C Ci + Ci) + C Ci + 2 C`` (with a norm;
    ``'gaussian'`` has no theta / phi, ``'concatenation'`` adds ``2 Ci``) plus ``C + 1`` for the
    unary ``conv_mask``. A point's pairwise row and the unary map are recomputed from the input.
    """

    attention_maps = {'': 'input'}
    residual = True
    conv_bn_pairs = (('conv_out', 'norm'),)  # folded for inference (seg.models.fuse)

    @classmethod
    def param_count(cls, channels: int, reduction: int = 2, mode: str = 'embedded_gaussian',
                    use_scale: bool = True, temperature: float = 0.05, norm: str = 'BN',
                    query_chunk: int = 1024) -> int:
        ci = channels // reduction
        embeds = 1 if mode == 'gaussian' else 3
        out = ci * channels + (channels if norm == 'none' else 2 * channels)
        pairwise = embeds * (channels * ci + ci) + out + (2 * ci if mode == 'concatenation' else 0)
        return pairwise + channels + 1

    def __init__(self, channels: int, reduction: int = 2, mode: str = 'embedded_gaussian',
                 use_scale: bool = True, temperature: float = 0.05, norm: str = 'BN',
                 query_chunk: int = 1024) -> None:
        super().__init__()
        owner = 'DisentangledNonLocal'
        self.channels = check_int(owner, 'channels', channels)
        inter = channels // check_reduction(owner, channels, reduction)
        if mode not in MODES:
            raise ValueError(f"{owner}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(use_scale, bool):
            raise ValueError(f'{owner}: use_scale must be a bool, got {use_scale!r}')
        self.temperature = check_positive(owner, 'temperature', temperature)
        if norm not in NORMS:
            raise ValueError(f"{owner}: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.query_chunk = check_int(owner, 'query_chunk', query_chunk)
        self.mode, self.use_scale, self.inter = mode, use_scale, inter
        self.g = nn.Conv2d(channels, inter, 1)
        if mode != 'gaussian':
            self.theta = nn.Conv2d(channels, inter, 1)
            self.phi = nn.Conv2d(channels, inter, 1)
        if mode == 'concatenation':
            self.concat_project = nn.Conv2d(2 * inter, 1, 1, bias=False)
        self.conv_out = nn.Conv2d(inter, channels, 1, bias=norm == 'none')
        self.norm = build_norm(norm, channels)
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        if isinstance(self.norm, nn.Identity):
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        else:
            nn.init.zeros_(self.norm.weight)

    def extra_repr(self) -> str:
        return f'mode={self.mode!r}, inter={self.inter}, temperature={self.temperature:g}'

    @property
    def scale(self) -> float:
        """The factor on the embedded-Gaussian logits: ``1 / (sqrt(Ci) T)``, ``1 / T`` without ``use_scale``."""
        return (1.0 / math.sqrt(self.inter) if self.use_scale else 1.0) / self.temperature

    def _whitened(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.mode == 'gaussian':
            xw = whiten(x)
            return xw, xw
        return whiten(self.theta(x)), whiten(self.phi(x))

    def unary(self, x: Tensor) -> Tensor:
        """The unary weights ``softmax_n(conv_mask(x)_n)``: (B, N), summing to 1 over the N positions."""
        return torch.softmax(self.conv_mask(x).flatten(1), dim=1)  # [B, N]

    def forward(self, x: Tensor) -> Tensor:
        """Add the disentangled non-local response to ``x`` (B, C, H, W)."""
        check_input('DisentangledNonLocal', x, self.channels)
        g = self.g(x)  # [B, Ci, H, W]
        theta, phi = self._whitened(x)
        if self.mode == 'embedded_gaussian':
            y = position_attention(theta, phi, g, scale=self.scale)
        elif self.mode == 'gaussian':
            y = position_attention(theta, phi, g, scale=1.0)
        elif self.mode == 'dot_product':
            y = dot_product_attention(theta, phi, g)
        else:
            weight = self.concat_project.weight.view(2, -1)
            y = concatenation_attention(theta, phi, g, weight, self.query_chunk)
        unary = torch.einsum('bn,bcn->bc', self.unary(x), g.flatten(2))  # [B, Ci]
        return x + self.norm(self.conv_out(y + unary[:, :, None, None]))

    def maps(self, records, locate=None):
        """The unary weights (``unary``, spatial) and the point's whitened pairwise weights
        (``pairwise``): a softmax row for the Gaussian modes, ``theta_p . phi_n / N`` (may be negative)
        or ``relu(...) / N`` for the others."""
        inputs = records.get('') or []
        if not inputs:
            return {}
        x = inputs[-1].to(self.g.weight)
        h, w = x.shape[-2:]
        with torch.no_grad():
            unary = self.unary(x)[0].reshape(h, w)
            out = {'unary': AttentionMap('spatial', unary, 'unary weights (softmax over positions)')}
            if locate is None:
                return out
            i, j = locate(h, w)
            theta, phi = self._whitened(x)
            if self.mode == 'embedded_gaussian':
                row = position_attention_row(theta, phi, i, j, self.scale)
            elif self.mode == 'gaussian':
                row = position_attention_row(theta, phi, i, j)
            else:
                weight = self.concat_project.weight.view(2, -1) if self.mode == 'concatenation' else None
                row = nonlocal_pairwise_row(self.mode, theta, phi, i, j, weight)
        out['pairwise'] = AttentionMap('point', row[0], f'whitened {self.mode} pairwise weights')
        return out
