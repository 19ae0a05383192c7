"""The two non-local pairwise functions that are not a softmax: dot product and concatenation.

Non-local Neural Networks (Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971

With theta, phi, g the (B, Ci, N) embeddings of the N = H * W pixels:

* dot product: ``y_p = 1/N sum_n (theta_p . phi_n) g_n``;
* concatenation: ``y_p = 1/N sum_n relu(w_theta . theta_p + w_phi . phi_n) g_n`` (the paper's
  ``relu(w^T [theta_p, phi_n])`` with w split in its theta and phi halves).

The (Gaussian and embedded-Gaussian) softmax forms are :func:`seg.ops.position_attention`.
Each fast path is exact beside its literal reference: the dot product is linear in N
(``theta^T (phi g^T) / N``, never the N x N matrix); the concatenation form walks over chunks of
queries so that its N x N matrix is held one chunk at a time.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['concatenation_attention', 'concatenation_attention_reference', 'dot_product_attention',
           'dot_product_attention_reference', 'nonlocal_pairwise_row']


def _check(theta: Tensor, phi: Tensor, g: Tensor) -> None:
    if theta.dim() != 4 or phi.shape != theta.shape or g.dim() != 4 or g.shape[0] != theta.shape[0] \
            or g.shape[2:] != theta.shape[2:]:
        raise ValueError(f'theta and phi must be (B, Ci, H, W) of equal shape and g (B, Cg, H, W) of the same '
                         f'batch and size, got {tuple(theta.shape)}, {tuple(phi.shape)}, {tuple(g.shape)}')


def dot_product_attention(theta: Tensor, phi: Tensor, g: Tensor) -> Tensor:
    """Dot-product non-local response ``1/N theta^T (phi g^T)``, linear in N: (B, Cg, H, W)."""
    _check(theta, phi, g)
    b, _, h, w = theta.shape
    n = h * w
    context = torch.einsum('bcn,bdn->bcd', phi.flatten(2), g.flatten(2)) / n  # [B, Ci, Cg]
    y = torch.einsum('bcn,bcd->bdn', theta.flatten(2), context)  # [B, Cg, N]
    return y.reshape(b, -1, h, w)  # [B, Cg, H, W]


def dot_product_attention_reference(theta: Tensor, phi: Tensor, g: Tensor) -> Tensor:
    """The dot-product response written literally: the N x N matrix ``theta^T phi / N``, then ``g``."""
    _check(theta, phi, g)
    b, _, h, w = theta.shape
    f = torch.bmm(theta.flatten(2).transpose(1, 2), phi.flatten(2)) / (h * w)  # [B, N, N]
    return torch.bmm(g.flatten(2), f.transpose(1, 2)).reshape(b, -1, h, w)  # [B, Cg, H, W]


def concatenation_attention(theta: Tensor, phi: Tensor, g: Tensor, weight: Tensor,
                            query_chunk: int = 1024) -> Tensor:
    """Concatenation non-local response, over chunks of ``query_chunk`` queries.

    Args:
        theta, phi: (B, Ci, H, W) embeddings.
        g: (B, Cg, H, W) values.
        weight: (2, Ci): ``w_theta`` and ``w_phi``.
        query_chunk: queries per chunk (bounds the memory to a (B, chunk, N) block).

    Returns:
        (B, Cg, H, W).
    """
    _check(theta, phi, g)
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        return concatenation_attention_reference(theta, phi, g, weight)  # no shape-dependent loop in a graph
    b, c, h, w = theta.shape
    n = h * w
    a = torch.einsum('c,bcn->bn', weight[0], theta.flatten(2))  # [B, N]
    bj = torch.einsum('c,bcn->bn', weight[1], phi.flatten(2))  # [B, N]
    gv = g.flatten(2)  # [B, Cg, N]
    chunks = []
    for start in range(0, n, query_chunk):
        f = torch.relu(a[:, start:start + query_chunk, None] + bj[:, None, :])  # [B, n_q, N]
        chunks.append(torch.einsum('bqn,bcn->bcq', f, gv) / n)  # [B, Cg, n_q]
    return torch.cat(chunks, dim=2).reshape(b, -1, h, w)  # [B, Cg, H, W]


def concatenation_attention_reference(theta: Tensor, phi: Tensor, g: Tensor, weight: Tensor) -> Tensor:
    """The concatenation response written literally: ``relu(w^T [theta_p, phi_n]) / N`` for every pair."""
    _check(theta, phi, g)
    b, c, h, w = theta.shape
    n = h * w
    t = theta.flatten(2).transpose(1, 2)[:, :, None, :].expand(b, n, n, c)  # [B, N, N, Ci]: theta_p
    p = phi.flatten(2).transpose(1, 2)[:, None, :, :].expand(b, n, n, c)  # [B, N, N, Ci]: phi_n
    f = torch.relu(torch.cat([t, p], dim=-1) @ weight.reshape(-1)) / n  # [B, N, N]
    return torch.bmm(g.flatten(2), f.transpose(1, 2)).reshape(b, -1, h, w)  # [B, Cg, H, W]


def nonlocal_pairwise_row(mode: str, theta: Tensor, phi: Tensor, i: int, j: int,
                          weight: Tensor | None = None) -> Tensor:
    """Pixel (i, j)'s pairwise weights ``f(x_p, x_n) / C(x)`` of the two linear forms, as a (B, H, W) map:
    ``theta_p . phi_n / N`` (``'dot_product'``, may be negative) or
    ``relu(w_theta . theta_p + w_phi . phi_n) / N`` (``'concatenation'``, needs ``weight``)."""
    b, _, h, w = theta.shape
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'pixel (row {i}, col {j}) is outside the {h}x{w} map')
    n = h * w
    if mode == 'dot_product':
        row = torch.einsum('bc,bcn->bn', theta[:, :, i, j], phi.flatten(2)) / n  # [B, N]
    elif mode == 'concatenation':
        if weight is None:
            raise ValueError("the 'concatenation' row needs the (2, Ci) projection weight")
        a = torch.einsum('c,bc->b', weight[0], theta[:, :, i, j])  # [B]
        row = torch.relu(a[:, None] + torch.einsum('c,bcn->bn', weight[1], phi.flatten(2))) / n  # [B, N]
    else:
        raise ValueError(f"mode must be 'dot_product' or 'concatenation', got {mode!r}")
    return row.reshape(b, h, w)  # [B, H, W]
