"""Non-local block.

Non-local Neural Networks (Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seg.models.norm import build_norm
from seg.ops import position_attention

MODES = ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation')


class NonLocal2d(nn.Module):
    """``z = x + W_z(y)``, ``y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)``, with W_z's norm starting at 0.

    Pairwise functions (``mode``):
        - ``embedded_gaussian``: softmax_j(theta_i . phi_j), scaled by 1/sqrt(inter) when ``use_scale``
          (mmsegmentation's default);
        - ``gaussian``: softmax_j(x_i . x_j), no embedding;
        - ``dot_product``: theta_i . phi_j / N (computed as theta^T (phi g^T) / N: linear in N);
        - ``concatenation``: ReLU(w^T [theta_i, phi_j]) / N.

    Args:
        channels: input channels C.
        reduction: inter channels = C // reduction (2 in the paper).
        mode: one of ``MODES``.
        use_scale: the 1/sqrt(inter) scale of the embedded Gaussian.
        norm: norm after W_z ('BN', 'GN', 'none'); with 'none' the W_z conv starts at 0 instead.
        query_chunk: queries per chunk for the concatenation form (bounds its N x N memory).
    """

    def __init__(self, channels: int, reduction: int = 2, mode: str = 'embedded_gaussian',
                 use_scale: bool = True, norm: str = 'BN', query_chunk: int = 1024) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'non-local mode must be one of {", ".join(MODES)}, got {mode!r}')
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f'non-local reduction must be in [1, channels={channels}], got {reduction}')
        inter = channels // reduction
        self.mode, self.use_scale, self.inter, self.query_chunk = mode, use_scale, inter, query_chunk
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

    def forward(self, x: Tensor) -> Tensor:
        g = self.g(x)  # [B, Ci, H, W]
        if self.mode == 'gaussian':
            y = position_attention(x, x, g, scale=1.0)
        elif self.mode == 'embedded_gaussian':
            scale = 1.0 / math.sqrt(self.inter) if self.use_scale else 1.0
            y = position_attention(self.theta(x), self.phi(x), g, scale=scale)
        elif self.mode == 'dot_product':
            y = self._dot_product(self.theta(x), self.phi(x), g)
        else:
            y = self._concatenation(self.theta(x), self.phi(x), g)
        return x + self.norm(self.conv_out(y))

    @staticmethod
    def _dot_product(theta: Tensor, phi: Tensor, g: Tensor) -> Tensor:
        b, c, h, w = theta.shape
        n = h * w
        context = torch.einsum('bcn,bdn->bcd', phi.flatten(2), g.flatten(2)) / n  # [B, Ci, Ci]
        y = torch.einsum('bcn,bcd->bdn', theta.flatten(2), context)  # [B, Ci, N]
        return y.reshape(b, -1, h, w)  # [B, Ci, H, W]

    def _concatenation(self, theta: Tensor, phi: Tensor, g: Tensor) -> Tensor:
        b, c, h, w = theta.shape
        n = h * w
        weight = self.concat_project.weight.view(2, c)  # [2, Ci]: w_theta, w_phi
        a = torch.einsum('c,bcn->bn', weight[0], theta.flatten(2))  # [B, N]
        bj = torch.einsum('c,bcn->bn', weight[1], phi.flatten(2))  # [B, N]
        gv = g.flatten(2)  # [B, Ci, N]
        chunks = []
        for start in range(0, n, self.query_chunk):
            f = torch.relu(a[:, start:start + self.query_chunk, None] + bj[:, None, :])  # [B, n_q, N]
            chunks.append(torch.einsum('bqn,bcn->bcq', f, gv) / n)  # [B, Ci, n_q]
        return torch.cat(chunks, dim=2).reshape(b, c, h, w)  # [B, Ci, H, W]
