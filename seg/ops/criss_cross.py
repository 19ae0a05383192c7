"""Criss-cross attention.

CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721

Each pixel attends to the H + W - 1 pixels of its own row and column (itself counted
once), with one softmax over all of them and no scaling of the logits.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f'q and k must be (B, C, H, W) of equal shape, got {tuple(q.shape)} '
                         f'and {tuple(k.shape)}')
    if v.dim() != 4 or v.shape[0] != q.shape[0] or v.shape[2:] != q.shape[2:]:
        raise ValueError(f'v must be (B, Cv, H, W) with the batch and spatial size of q '
                         f'{tuple(q.shape)}, got {tuple(v.shape)}')


def criss_cross_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Criss-cross attention, fast path (einsum over rows and columns).

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).

    Returns:
        (B, Cv, H, W): for every pixel, the softmax-weighted sum of the values on its row
        and column, the pixel itself counted once.
    """
    _check(q, k, v)
    h = q.shape[2]
    # Column energies: pixel (i, j) against (y, j) for every y.  [B, H, W, H]
    energy_h = torch.einsum('bciw,bcyw->biwy', q, k)
    # The pixel itself appears in both its row and its column: drop it from the column.
    diag = torch.eye(h, dtype=torch.bool, device=q.device).view(h, 1, h)  # [H, 1, H]
    energy_h = energy_h.masked_fill(diag, float('-inf'))
    # Row energies: pixel (i, j) against (i, x) for every x.  [B, H, W, W]
    energy_w = torch.einsum('bchw,bchx->bhwx', q, k)
    # One softmax over the H + W positions (the masked one gets weight 0).  [B, H, W, H+W]
    attn = torch.softmax(torch.cat([energy_h, energy_w], dim=-1), dim=-1)
    attn_h, attn_w = attn[..., :h], attn[..., h:]
    out = torch.einsum('biwy,bcyw->bciw', attn_h, v)  # [B, Cv, H, W]
    out = out + torch.einsum('bhwx,bchx->bchw', attn_w, v)  # [B, Cv, H, W]
    return out


def criss_cross_attention_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Slow, obviously-correct criss-cross attention: an explicit loop over pixels."""
    _check(q, k, v)
    b, _, h, w = q.shape
    out = torch.zeros(b, v.shape[1], h, w, dtype=v.dtype, device=v.device)
    for i in range(h):
        for j in range(w):
            # The criss-cross of (i, j): its column, then its row without (i, j) itself.
            keys = torch.cat([k[:, :, :, j], k[:, :, i, :j], k[:, :, i, j + 1:]], dim=2)  # [B, C, H+W-1]
            vals = torch.cat([v[:, :, :, j], v[:, :, i, :j], v[:, :, i, j + 1:]], dim=2)  # [B, Cv, H+W-1]
            logits = torch.einsum('bc,bcn->bn', q[:, :, i, j], keys)  # [B, H+W-1]
            weights = torch.softmax(logits, dim=1)
            out[:, :, i, j] = torch.einsum('bn,bcn->bc', weights, vals)
    return out
