"""Channel attention of DANet (the CAM, without its learned gamma and residual).

Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019),
https://arxiv.org/abs/1809.02983

With X the (C, N) matrix of a feature map's N = H * W pixels, E = X X^T (C x C),
A = softmax(max(E) - E) along the last axis (max over that axis, as in DANet's code) and
out = A X.  The energies of real features are large (thousands), so the shifted form is computed
literally, as DANet and mmsegmentation do: softmax(-E) is the same function, but it rounds
differently by about one float32 step of E, which would be visible in the output.  The learnable
gamma and the residual connection belong to the module, not to this op.

In float16 / bfloat16 (autocast in training, cast weights in inference) E is computed in float32:
rounded to bfloat16, an energy near 8192 would be off by up to 32, which changes the softmax
completely; the weights then multiply X in the input's dtype.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f'x must be (B, C, H, W), got shape {tuple(x.shape)}')


def channel_attention_weights(x: Tensor) -> Tensor:
    """The CAM weights ``softmax(max(E) - E)`` with ``E = X X^T`` over the pixels, in float32.

    Args:
        x: features, (B, C, H, W).

    Returns:
        (B, C, C) float32 (float64 for float64 input), each row summing to 1: row c weighs the
        channels channel c gathers from.

    Raises:
        ValueError: if ``x`` is not 4-dimensional.
    """
    _check(x)
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)  # [B, C, N]
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    with torch.autocast(x.device.type, enabled=False):
        energy = torch.bmm(flat, flat.transpose(1, 2))  # [B, C, C], float32
        return torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)  # [B, C, C]


def channel_attention(x: Tensor) -> Tensor:
    """Channel attention: out = softmax(max(E) - E) X.

    Args:
        x: features, (B, C, H, W).

    Returns:
        (B, C, H, W), equal to :func:`channel_attention_reference` up to rounding.

    Raises:
        ValueError: if ``x`` is not 4-dimensional.
    """
    attn = channel_attention_weights(x)  # [B, C, C]
    b, c, h, w = x.shape
    out = torch.bmm(attn.to(x.dtype), x.reshape(b, c, h * w))  # [B, C, N]
    return out.reshape(b, c, h, w)  # [B, C, H, W]


def channel_attention_reference(x: Tensor) -> Tensor:
    """Channel attention written out channel by channel: for each c, the softmax of
    ``max_d(E_cd) - E_c.`` over d, then the weighted sum of the channels."""
    _check(x)
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)  # [B, C, N]
    out = torch.empty_like(flat)
    for i in range(c):
        energy = torch.einsum('bn,bdn->bd', flat[:, i], flat)  # [B, C]: channel i against every channel
        shifted = energy.max(dim=1, keepdim=True).values - energy  # [B, C]
        weights = torch.exp(shifted - shifted.max(dim=1, keepdim=True).values)  # [B, C]
        weights = weights / weights.sum(dim=1, keepdim=True)
        out[:, i] = torch.einsum('bd,bdn->bn', weights, flat)  # [B, N]
    return out.reshape(b, c, h, w)  # [B, C, H, W]
