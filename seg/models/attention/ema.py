"""Expectation-Maximization Attention Networks for Semantic Segmentation (Li et al., ICCV 2019),
https://arxiv.org/abs/1907.13426 -- the EMA unit.

``y = relu(x + norm(W_out relu(EM(W_mid x))))``, as the paper's figure: a fixed 1x1 projection
``W_mid`` maps the input (after a ReLU, in [0, inf)) to (-inf, inf); the EM iterations run on it;
their reconstruction goes through a ReLU, a 1x1 convolution and a norm and is added to the input.

EM over K bases ``mu`` (C x K, each of unit L2 norm), for T stages, on the features X (C x N):

* E step: the responsibilities ``z_nk = softmax_k(x_n . mu_k)`` (N x K);
* M step: ``mu_k = sum_n x_n z_nk / sum_n z_nk``, then L2-normalised.

The output is the low-rank reconstruction ``X~ = mu z^T`` from the last stage's responsibilities
and bases. The iterations run outside autograd (as the paper and mmsegmentation): no gradient
reaches ``W_mid`` (a fixed random projection, kept as buffers) nor the input through them.

The bases start as the buffer :attr:`EMA.bases` (1 x C x K); in training, after each forward, it
moves by ``momentum`` towards the batch mean of the final bases (averaged over the processes of a
``torch.distributed`` run, then L2-normalised); in eval it is never changed, so eval is
deterministic. The EM runs in float32 (float64 for a float64 input) whatever the autocast dtype.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.layers import hooked, memory_format_of
from seg.models.norm import NORMS, build_norm
from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int

__all__ = ['EMA', 'em_iterations']

TOP_BASES = 4
"""How many bases :meth:`EMA.maps` draws (those with the most responsibility)."""


def em_iterations(x: Tensor, bases: Tensor, num_stages: int) -> tuple[Tensor, Tensor]:
    """T EM stages from the initial ``bases``; no autograd.

    Args:
        x: features, (B, C, N).
        bases: initial bases, (B, C, K).
        num_stages: T >= 1.

    Returns:
        ``(bases, responsibilities)``: the last M step's L2-normalised bases (B, C, K) and the last
        E step's responsibilities (B, N, K), each row a distribution over the K bases.
    """
    with torch.no_grad():
        for _ in range(num_stages):
            z = torch.softmax(torch.bmm(x.transpose(1, 2), bases), dim=2)  # [B, N, K]
            z_mean = F.normalize(z, p=1, dim=1)  # each base's weights over the N pixels sum to 1
            bases = F.normalize(torch.bmm(x, z_mean), p=2, dim=1)  # [B, C, K]
    return bases, z


@ATTENTION.register_module(name='ema')
class EMA(AttentionModule):
    """The EMA unit ``relu(x + norm(W_out relu(EM(W_mid x))))`` with K bases and T EM stages.

    Args:
        channels: input (and output) channels C.
        num_bases: K (64 in the paper).
        num_stages: T, the EM iterations (3 in the paper).
        momentum: how far the bases move towards the batch's each training forward (0.1).
        norm: the norm after ``W_out``: ``'BN'``, ``'SyncBN'``, ``'GN'`` or ``'none'``.

    Parameters: ``C C`` (``W_out``, bias-free) plus the norm's ``2 C``; the buffers are the bases
    (C K) and the fixed ``W_mid`` (C C + C). Not residual in :attr:`AttentionModule.residual`'s
    sense: the reconstruction enters at full weight (the norm's scale starts at 1) and the sum
    goes through a ReLU. The maps are recomputed from the module's input.
    """

    attention_maps = {'': 'input'}
    residual = False
    conv_bn_pairs = (('conv_out', 'norm'),)  # folded for inference (seg.models.fuse)

    def __init__(self, channels: int, num_bases: int = 64, num_stages: int = 3, momentum: float = 0.1,
                 norm: str = 'BN') -> None:
        super().__init__()
        self.channels = check_int('EMA', 'channels', channels)
        self.num_bases = check_int('EMA', 'num_bases', num_bases)
        self.num_stages = check_int('EMA', 'num_stages', num_stages)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f'EMA: momentum must be a number in [0, 1], got {momentum!r}')
        if norm not in NORMS:
            raise ValueError(f"EMA: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.momentum = float(momentum)
        bases = torch.randn(1, channels, num_bases) * math.sqrt(2.0 / num_bases)
        self.register_buffer('bases', F.normalize(bases, p=2, dim=1))  # [1, C, K]
        # W_mid: He-initialised (fan-out) and never trained, since no gradient reaches it.
        self.register_buffer('mid_weight', torch.randn(channels, channels, 1, 1) * math.sqrt(2.0 / channels))
        self.register_buffer('mid_bias', torch.zeros(channels))
        self.conv_out = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm = build_norm(norm, channels)

    def extra_repr(self) -> str:
        return f'num_bases={self.num_bases}, num_stages={self.num_stages}, momentum={self.momentum}'

    def _em(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``W_mid x`` (B, C, N) in float32 / float64, and the EM's final bases and responsibilities."""
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            feats = F.conv2d(x.to(dtype), self.mid_weight.to(dtype), self.mid_bias.to(dtype)).flatten(2)
            bases, z = em_iterations(feats, self.bases.to(dtype).expand(x.shape[0], -1, -1), self.num_stages)
        return feats, bases, z

    def forward(self, x: Tensor) -> Tensor:
        """The EMA unit on ``x`` (B, C, H, W); in training, also the bases' momentum update."""
        check_input('EMA', x, self.channels)
        bases, z = self._em(x)[1:]  # W_mid x is not kept
        if self.training:
            self._update_bases(bases)
        # X~ = mu z^T, outside autograd, so its ReLU runs in place; written in x's memory format (as
        # z mu^T, pixels by channels, for channels-last), so the convolution after it copies nothing.
        b, c, h, w = x.shape
        if memory_format_of(x) is torch.channels_last:
            recon = torch.bmm(z, bases.transpose(1, 2)).view(b, h, w, c).permute(0, 3, 1, 2)
        else:
            recon = torch.bmm(bases, z.transpose(1, 2)).view(b, c, h, w)
        del bases, z
        out = self.norm(self.conv_out(recon.to(x.dtype).relu_()))
        del recon
        if torch.is_grad_enabled() or hooked(self.conv_out, self.norm):
            # clamp_min(0) is the ReLU, saving its input rather than its output for backward: a caller may
            # add onto the output in place (timm's residual blocks add the shortcut so).
            return (x + out).clamp_min(0)
        return out.add_(x).clamp_min_(0)  # no autograd, nothing watching: one map instead of three

    @torch.no_grad()
    def _update_bases(self, bases: Tensor) -> None:
        mean = bases.mean(dim=0, keepdim=True)  # [1, C, K]
        if dist.is_available() and dist.is_initialized():
            mean = mean / dist.get_world_size()
            dist.all_reduce(mean, op=dist.ReduceOp.SUM)
        mean = F.normalize(mean, p=2, dim=1)
        self.bases.copy_((1 - self.momentum) * self.bases + self.momentum * mean.to(self.bases.dtype))

    def maps(self, records, locate=None):
        """The responsibilities of the last E step, as spatial maps: ``assignment`` (per pixel, the
        index of the base with the largest responsibility) and ``base<k>`` (base k's responsibility at
        every pixel, for the :data:`TOP_BASES` bases with the most in total); and with a point,
        ``row``: the weights ``sum_k z_pk z_nk / (sum_m z_mk ||mu_k||)`` of the reconstruction
        ``x~_p = sum_n w_pn x_n`` (where the point's reconstruction draws from)."""
        inputs = records.get('') or []
        if not inputs:
            return {}
        x = inputs[-1][:1].to(self.conv_out.weight.device)
        h, w = x.shape[-2:]
        with torch.no_grad():
            feats, _, z = self._em(x)
            z = z[0]  # [N, K]
            out = {'assignment': AttentionMap('spatial', z.argmax(dim=1).reshape(h, w).to(z.dtype),
                                              'index of the base with the largest responsibility')}
            for k in z.sum(dim=0).argsort(descending=True)[:min(TOP_BASES, self.num_bases)].tolist():
                out[f'base{k}'] = AttentionMap('spatial', z[:, k].reshape(h, w), f'responsibility of base {k}')
            if locate is not None:
                i, j = locate(h, w)
                z_mean = F.normalize(z, p=1, dim=0)  # [N, K]
                norms = (feats[0] @ z_mean).norm(dim=0).clamp_min(1e-12)  # [K]: ||mu_k|| before the L2 norm
                row = z_mean @ (z[i * w + j] / norms)  # [N]
                out['row'] = AttentionMap('point', row.reshape(h, w), 'weights of the point\'s reconstruction')
        return out
