"""Channel attention of DANet (the CAM, without its learned gamma and residual).

Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019),
https://arxiv.org/abs/1809.02983

With X the (C, N) matrix of a feature map's N = H * W pixels, E = X X^T (C x C),
A = softmax(max(E) - E) along the last axis (max over that axis, as in DANet's code) and
out = A X.  Since softmax is shift invariant per row, softmax(max(E) - E) = softmax(-E)
exactly; the fast path uses that and skips the max and the subtraction.  The learnable gamma and
the residual connection belong to the module, not to this op.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f'x must be (B, C, H, W), got shape {tuple(x.shape)}')


def channel_attention(x: Tensor) -> Tensor:
    """Channel attention, fast path: out = softmax(-X X^T) X.

    Args:
        x: features, (B, C, H, W).

    Returns:
        (B, C, H, W), equal to :func:`channel_attention_reference` up to rounding.

    Raises:
        ValueError: if ``x`` is not 4-dimensional.
    """
    _check(x)
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)  # [B, C, N]
    energy = torch.bmm(flat, flat.transpose(1, 2))  # [B, C, C]
    # Negate the small C x C matrix, not the (B, C, N) operands (an alpha=-1 in baddbmm would
    # cost two extra (B, C, N) buffers in backward).
    attn = torch.softmax(-energy, dim=-1)  # [B, C, C]
    out = torch.bmm(attn, flat)  # [B, C, N]
    return out.reshape(b, c, h, w)  # [B, C, H, W]


def channel_attention_reference(x: Tensor) -> Tensor:
    """Channel attention written literally: softmax(max(E) - E) X with E = X X^T."""
    _check(x)
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)  # [B, C, N]
    energy = torch.bmm(flat, flat.transpose(1, 2))  # [B, C, C]
    energy_new = energy.amax(dim=-1, keepdim=True) - energy  # [B, C, C]
    attn = torch.softmax(energy_new, dim=-1)  # [B, C, C]
    out = torch.bmm(attn, flat)  # [B, C, N]
    return out.reshape(b, c, h, w)  # [B, C, H, W]
