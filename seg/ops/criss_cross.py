"""Criss-cross attention.

CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721

Each pixel attends to the H + W - 1 pixels of its own row and column (itself counted
once), with one softmax over all of them and no scaling of the logits.

Three exact implementations live here:

* :func:`criss_cross_attention_einsum`: the row and column energies are concatenated and
  normalised by one softmax, then two einsums gather the values.
* :func:`criss_cross_attention_lse`: a row attention and a column attention (the pixel
  itself masked out of the column) computed separately and merged through their
  log-sum-exp, so that each part is a plain batched matmul (or, on another device, any
  fused attention kernel that reports its log-sum-exp).
* :func:`criss_cross_attention_reference`: an explicit loop over pixels, obviously right
  and slow; used by the tests only.

:func:`criss_cross_attention` dispatches per device type to the implementation named in
:data:`CRISS_CROSS_BACKENDS` (see ``docs/benchmarks.md`` for the measurements behind the
defaults; the CUDA default is unmeasured).
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import Tensor


def _check(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f'q and k must be (B, C, H, W) of equal shape, got {tuple(q.shape)} '
                         f'and {tuple(k.shape)}')
    if v.dim() != 4 or v.shape[0] != q.shape[0] or v.shape[2:] != q.shape[2:]:
        raise ValueError(f'v must be (B, Cv, H, W) with the batch and spatial size of q '
                         f'{tuple(q.shape)}, got {tuple(v.shape)}')


def _self_mask(h: int, device: torch.device) -> Tensor:
    """(H, H) booleans, True on the diagonal: position i against itself."""
    idx = torch.arange(h, device=device)
    return idx[:, None] == idx[None, :]


def criss_cross_weights(q: Tensor, k: Tensor) -> Tensor:
    """Criss-cross attention weights of every pixel: one softmax over its column and its row.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).

    Returns:
        (B, H, W, H + W): for pixel (i, j), entries ``[:H]`` weigh the column pixels (y, j) (entry
        i, the pixel itself, is 0: it is counted once, in the row) and entries ``[H:]`` the row
        pixels (i, x). Each pixel's weights sum to 1. Energies and softmax are float32 for float16 /
        bfloat16 inputs (a logit near 100 rounded to bfloat16 is off by up to 0.25).

    Raises:
        ValueError: if ``q`` and ``k`` are not 4-D tensors of equal shape.
    """
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f'q and k must be (B, C, H, W) of equal shape, got {tuple(q.shape)} '
                         f'and {tuple(k.shape)}')
    h = q.shape[2]
    if q.dtype in (torch.float16, torch.bfloat16):
        q, k = q.float(), k.float()
    with torch.autocast(q.device.type, enabled=False):
        return _criss_cross_softmax(q, k, h)


def _criss_cross_softmax(q: Tensor, k: Tensor, h: int) -> Tensor:
    # Column energies: pixel (i, j) against (y, j) for every y.  [B, H, W, H]
    energy_h = torch.einsum('bciw,bcyw->biwy', q, k)
    # The pixel itself appears in both its row and its column: drop it from the column. The mask
    # is built by comparing two ranges, not with eye / diag: that exports to ONNX (EyeLike on
    # booleans, and a diag of -inf, have no ONNX Runtime kernel).
    energy_h = energy_h.masked_fill(_self_mask(h, q.device).view(h, 1, h), float('-inf'))  # [B, H, W, H]
    # Row energies: pixel (i, j) against (i, x) for every x.  [B, H, W, W]
    energy_w = torch.einsum('bchw,bchx->bhwx', q, k)
    # One softmax over the H + W positions (the masked one gets weight 0).  [B, H, W, H+W]
    return torch.softmax(torch.cat([energy_h, energy_w], dim=-1), dim=-1)


def criss_cross_attention_einsum(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Criss-cross attention with one softmax over concatenated row and column energies.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).

    Returns:
        (B, Cv, H, W): for every pixel, the softmax-weighted sum of the values on its row
        and column, the pixel itself counted once.

    Raises:
        ValueError: if the shapes of ``q``, ``k`` and ``v`` do not fit together.
    """
    _check(q, k, v)
    h = q.shape[2]
    attn = criss_cross_weights(q, k).to(v.dtype)  # [B, H, W, H+W]
    attn_h, attn_w = attn[..., :h], attn[..., h:]
    out = torch.einsum('biwy,bcyw->bciw', attn_h, v)  # [B, Cv, H, W]
    out = out + torch.einsum('bhwx,bchx->bchw', attn_w, v)  # [B, Cv, H, W]
    return out


def criss_cross_attention_lse(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Criss-cross attention as a row and a column attention merged by log-sum-exp.

    The row attention of pixel (i, j) runs over the W pixels of row i, the column attention
    over the H - 1 other pixels of column j (the pixel itself masked with -inf, so it is
    counted once).  With ``lse_r`` and ``lse_c`` the log-sum-exp of each part's logits, the
    joint softmax over all H + W - 1 positions is ``exp(logit - lse)`` with
    ``lse = logaddexp(lse_r, lse_c)``, so each part is normalised by the joint log-sum-exp
    and the two value products are added.  Every product is a plain batched matmul over
    rows (batch B * H) or columns (batch B * W); no concatenation is needed.  In float16 /
    bfloat16 the normalisation runs in float32.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).

    Returns:
        (B, Cv, H, W), equal to :func:`criss_cross_attention_einsum` up to rounding.

    Raises:
        ValueError: if the shapes of ``q``, ``k`` and ``v`` do not fit together.
    """
    _check(q, k, v)
    h = q.shape[2]
    # The value products run in the dtype a matmul gets (autocast's, or the inputs'); the logits and
    # the normalisation in float32 whenever that is float16 / bfloat16.
    device = q.device.type
    compute_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else q.dtype
    qf, kf = (q.float(), k.float()) if compute_dtype in (torch.float16, torch.bfloat16) else (q, k)
    with torch.autocast(device, enabled=False):
        # Row logits: pixel (i, j) against (i, x).  [B, H, W, C] @ [B, H, C, W] -> [B, H, W, W]
        logit_row = torch.matmul(qf.permute(0, 2, 3, 1), kf.permute(0, 2, 1, 3))
        # Column logits: pixel (i, j) against (y, j).  [B, W, H, C] @ [B, W, C, H] -> [B, W, H, H]
        logit_col = torch.matmul(qf.permute(0, 3, 2, 1), kf.permute(0, 3, 1, 2)) if h > 1 else None
    lse = torch.logsumexp(logit_row, dim=-1)  # [B, H, W]
    if h > 1:
        logit_col = logit_col.masked_fill(_self_mask(h, q.device), float('-inf'))  # [B, W, H, H]
        # Joint log-sum-exp of the H + W - 1 positions.  [B, H, W]
        lse = torch.logaddexp(lse, torch.logsumexp(logit_col, dim=-1).transpose(1, 2))
    # [B, H, W, W]
    p_row = torch.exp(logit_row - lse.unsqueeze(-1)).to(compute_dtype)
    # [B, H, Cv, W] @ [B, H, W, W] -> [B, H, Cv, W], then -> [B, Cv, H, W]
    out = torch.matmul(v.transpose(1, 2), p_row.transpose(-1, -2)).transpose(1, 2)
    if h > 1:
        # [B, W, H, H]
        p_col = torch.exp(logit_col - lse.transpose(1, 2).unsqueeze(-1)).to(compute_dtype)
        # [B, W, Cv, H] @ [B, W, H, H] -> [B, W, Cv, H], then -> [B, Cv, H, W]
        out_col = torch.matmul(v.permute(0, 3, 1, 2), p_col.transpose(-1, -2)).permute(0, 2, 3, 1)
        out = out + out_col
    # Like the einsum version, the result keeps the layout the matmuls produced (it is not
    # NCHW-contiguous); a following convolution copies it once either way.
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


CRISS_CROSS_IMPLS: Dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    'einsum': criss_cross_attention_einsum,
    'lse': criss_cross_attention_lse,
}
"""Exact fast implementations :func:`criss_cross_attention` can dispatch to, by name."""

CRISS_CROSS_BACKENDS: Dict[str, str] = {
    # Measured on a 2-core CPU (docs/benchmarks.md): the einsum version is faster.
    'cpu': 'einsum',
    # Unmeasured (no GPU was available); the einsum version is the one mmcv measured on CUDA.
    'cuda': 'einsum',
}
"""Implementation used per ``device.type``; a device type not listed uses ``'einsum'``."""


def set_criss_cross_backend(device_type: str, name: str) -> None:
    """Choose the implementation :func:`criss_cross_attention` uses on a device type.

    Args:
        device_type: a ``torch.device.type`` such as ``'cpu'`` or ``'cuda'``.
        name: one of the keys of :data:`CRISS_CROSS_IMPLS` (``'einsum'``, ``'lse'``).

    Raises:
        ValueError: if ``name`` is not a known implementation.
    """
    if name not in CRISS_CROSS_IMPLS:
        raise ValueError(f'unknown criss-cross implementation {name!r}; valid names are: '
                         f"{', '.join(sorted(CRISS_CROSS_IMPLS))}")
    CRISS_CROSS_BACKENDS[device_type] = name


def criss_cross_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Criss-cross attention, fast path: the implementation chosen for ``q.device.type``.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).

    Returns:
        (B, Cv, H, W): for every pixel, the softmax-weighted sum of the values on its row
        and column, the pixel itself counted once.

    Raises:
        ValueError: if the shapes of ``q``, ``k`` and ``v`` do not fit together.
    """
    impl = CRISS_CROSS_IMPLS[CRISS_CROSS_BACKENDS.get(q.device.type, 'einsum')]
    return impl(q, k, v)


# ---------------------------------------------------------------- the weights of one pixel, and of R passes
def criss_cross_positions(h: int, w: int, i: int, j: int) -> tuple[Tensor, Tensor]:
    """Rows and columns of the H + W - 1 pixels that pixel (i, j) attends to, in the order of
    :func:`criss_cross_pixel_weights`: its column top to bottom (itself included), then its row
    left to right without itself."""
    ys = torch.cat([torch.arange(h), torch.full((w - 1,), i)])
    xs = torch.cat([torch.full((h,), j), torch.arange(j), torch.arange(j + 1, w)])
    return ys, xs


def criss_cross_pixel_weights(q: Tensor, k: Tensor, i: int, j: int) -> Tensor:
    """The H + W - 1 criss-cross weights of pixel (i, j), from its query only.

    Returns:
        (B, H + W - 1) weights over :func:`criss_cross_positions`, so that ``weights @ values`` at
        those positions is the op's output at (i, j).

    Raises:
        ValueError: on bad shapes or a pixel outside the map.
    """
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f'q and k must be (B, C, H, W) of equal shape, got {tuple(q.shape)} and {tuple(k.shape)}')
    h, w = q.shape[-2:]
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'pixel (row {i}, col {j}) is outside the {h}x{w} map')
    qp = q[:, :, i, j]  # [B, C]
    col = torch.einsum('bc,bcy->by', qp, k[:, :, :, j])  # [B, H]
    row = torch.einsum('bc,bcx->bx', qp, k[:, :, i, :])  # [B, W]
    return torch.softmax(torch.cat([col, row[:, :j], row[:, j + 1:]], dim=1), dim=1)  # [B, H + W - 1]


def criss_cross_pixel_map(q: Tensor, k: Tensor, i: int, j: int) -> Tensor:
    """The criss-cross weights of pixel (i, j) laid out on the map: (B, H, W), zero off its cross."""
    h, w = q.shape[-2:]
    weights = criss_cross_pixel_weights(q, k, i, j)  # [B, H + W - 1]
    ys, xs = criss_cross_positions(h, w, i, j)
    out = weights.new_zeros(q.shape[0], h, w)  # [B, H, W]
    out[:, ys, xs] = weights
    return out


def criss_cross_propagate(dist: Tensor, attn: Tensor) -> Tensor:
    """``dist @ A`` for one criss-cross pass A given by :func:`criss_cross_weights`.

    Args:
        dist: (B, H, W) weights over the output pixels of the pass.
        attn: (B, H, W, H + W) the pass's weights.

    Returns:
        (B, H, W): how much each input pixel of the pass contributes, ``sum_p dist[p] A[p, n]``.
    """
    h = dist.shape[1]
    attn_col, attn_row = attn[..., :h], attn[..., h:]  # [B, H, W, H], [B, H, W, W]
    out = torch.einsum('bij,bijy->byj', dist, attn_col)  # [B, H, W]: mass sent up / down the column
    return out + torch.einsum('bij,bijx->bix', dist, attn_row)  # [B, H, W]: and along the row


def criss_cross_effective_map(attns: list[Tensor], i: int, j: int) -> Tensor:
    """Where the output of pixel (i, j) after R criss-cross passes draws from.

    The row of ``A_R A_(R-1) ... A_1`` for the pixel (the composition of the passes' attention
    matrices, last pass first; residual connections and value projections left out). At R = 1 it is
    the pixel's cross, from R = 2 on it covers the whole map.

    Args:
        attns: per pass, in forward order, its (B, H, W, H + W) weights.
        i, j: the pixel.

    Returns:
        (B, H, W) non-negative weights summing to 1.

    Raises:
        ValueError: if no pass is given or the pixel is outside the map.
    """
    if not attns:
        raise ValueError('criss_cross_effective_map needs at least one pass')
    b, h, w = attns[0].shape[:3]
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'pixel (row {i}, col {j}) is outside the {h}x{w} map')
    dist = attns[0].new_zeros(b, h, w)  # [B, H, W]
    dist[:, i, j] = 1.0
    for attn in reversed(attns):
        dist = criss_cross_propagate(dist, attn)
    return dist
