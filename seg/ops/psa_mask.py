"""PSANet's point-wise spatial attention: mmcv's PSAMask, and the attention it feeds, without the N x N matrix.

PSANet: Point-wise Spatial Attention Network for Scene Parsing (Zhao et al., ECCV 2018),
https://hszhao.github.io/papers/eccv18_psanet.pdf

Every pixel p of an (H, W) map predicts a mask of mh x mw logits (the mh * mw channels of a
convolution), centred on itself: its channel ``(a, b)`` is about the position
``p + (a - (mh - 1) // 2, b - (mw - 1) // 2)``; channels that fall outside the map are dropped and
positions the mask does not reach get logit 0. mmcv's ``PSAMask`` (:func:`psa_mask`) lays these out
over the whole map, as an (N, H, W) buffer for N = H * W (``buffer[n, i, p]`` with ``i`` a
position and ``p`` a pixel, both flat):

* ``'collect'``: pixel t gathers from position s with pixel t's own mask:
  ``buffer[s, t] = mask[s - t, t]``;
* ``'distribute'``: pixel s hands its feature to position t with pixel s's own mask:
  ``buffer[s, t] = mask[t - s, s]``.

mmsegmentation's ``PSAHead`` then takes ``softmax`` over the buffer's first axis (over s, for each t)
and ``out[:, t] = sum_s x[:, s] buffer[s, t]``: each output pixel is a weighted mean of the whole
feature (:func:`psa_attention_reference`). Written so it holds the N x N buffer twice (the mask
laid out, then its softmax); at 1024 x 2048 inference with a shrink factor of 2 that is
8192 x 8192 floats (256 MiB) each, per branch.

:func:`psa_attention` computes the same without it: a custom autograd function that walks over
chunks of the pixels that own the masks (the targets for ``'collect'``, the sources for
``'distribute'``), builds each chunk's (B, chunk, N) block of logits by a gather from the mask, and
keeps per target only the log-sum-exp of its logits; backward rebuilds the blocks from the mask and
sends each block's gradient back to the mask by the inverse gather. Peak extra memory is a few
(B, chunk, N) blocks (64 MiB each by default) beside the mask itself, which the attention
convolution produces anyway ((B, mh * mw, H, W): 9409 x 8192 floats, 294 MiB, at 1024 x 2048 with
mmsegmentation's 97 x 97 masks).

:func:`psa_mask_reference` is mmcv's kernel as plain loops (its indexing, one pixel and mask cell at a
time); :func:`psa_mask` is the same buffer by one gather from the mask with a zero channel appended.
:func:`psa_attention_weights` is the whole (B, N, N) attention, for the visualiser.
"""
from __future__ import annotations

import contextlib
from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['PSA_TYPES', 'psa_attention', 'psa_attention_reference', 'psa_attention_weights', 'psa_mask',
           'psa_mask_reference']

PSA_TYPES = ('collect', 'distribute')
"""The two layouts of mmcv's ``PSAMask`` (mmcv numbers them 0 and 1)."""

DEFAULT_CHUNK_BYTES = 64 * 2 ** 20
"""Size of one (B, chunk, N) block of logits :func:`psa_attention` aims for (64 MiB)."""

_MIN_CHUNK = 16


def _mask_size(mask_size: Any) -> Tuple[int, int]:
    pair = (mask_size, mask_size) if isinstance(mask_size, int) else mask_size
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f'mask_size must be an integer >= 1 or a pair (mask_h, mask_w) of them, got {mask_size!r}')
    return int(pair[0]), int(pair[1])


def _check(mask: Tensor, psa_type: Any, mask_size: Any) -> Tuple[int, int]:
    if psa_type not in PSA_TYPES:
        raise ValueError(f"psa_type must be 'collect' or 'distribute', got {psa_type!r}")
    mh, mw = _mask_size(mask_size)
    if mask.dim() != 4 or mask.shape[1] != mh * mw or mask.numel() == 0:
        raise ValueError(f'the mask must be a non-empty (B, mask_h * mask_w = {mh * mw}, H, W) tensor for '
                         f'mask_size {(mh, mw)}, got shape {tuple(mask.shape)}')
    return mh, mw


def psa_mask_reference(mask: Tensor, psa_type: str, mask_size: Any) -> Tensor:
    """mmcv's ``PSAMask`` forward, as its kernel indexes: loops over pixels and mask cells.

    Args:
        mask: (B, mh * mw, H, W), channel ``a * mw + b`` of pixel (h, w) about position
            ``(h + a - (mh - 1) // 2, w + b - (mw - 1) // 2)``.
        psa_type: ``'collect'`` or ``'distribute'``.
        mask_size: (mh, mw), or one int for both.

    Returns:
        (B, H * W, H, W); entries no mask cell reaches are 0.

    Raises:
        ValueError: an unknown ``psa_type``, a bad ``mask_size``, or a mask whose channels are not mh * mw.
    """
    mh, mw = _check(mask, psa_type, mask_size)
    half_h, half_w = (mh - 1) // 2, (mw - 1) // 2
    b, _, h, w = mask.shape
    buffer = mask.new_zeros(b, h * w, h, w)
    for ph in range(h):  # the pixel whose mask is read
        for pw in range(w):
            for a in range(max(0, half_h - ph), min(mh, h + half_h - ph)):  # its mask cells inside the map
                for c in range(max(0, half_w - pw), min(mw, w + half_w - pw)):
                    fh, fw = a + ph - half_h, c + pw - half_w  # the position the cell is about
                    value = mask[:, a * mw + c, ph, pw]
                    if psa_type == 'collect':
                        buffer[:, fh * w + fw, ph, pw] = value
                    else:
                        buffer[:, ph * w + pw, fh, fw] = value
    return buffer


def _pixel_rows_cols(h: int, w: int, start: int, stop: int, device: torch.device) -> Tuple[Tensor, Tensor]:
    """Row and column of the flat pixels ``start:stop`` of an (h, w) map (no integer division: it exports)."""
    rows = torch.arange(h, device=device)[:, None].expand(h, w).reshape(-1)
    cols = torch.arange(w, device=device)[None, :].expand(h, w).reshape(-1)
    return rows[start:stop], cols[start:stop]


def _owner_block(m5: Tensor, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of the (N, N) matrix ``[k, j] = mask[j - k, k]`` (0 out of the mask).

    ``m5`` is the mask as (B, mh, mw, H, W); k is the pixel owning the mask, j a position. Returns
    (B, stop - start, N) in ``m5``'s dtype.
    """
    b, mh, mw, h, w = m5.shape
    device = m5.device
    kh, kw = _pixel_rows_cols(h, w, start, stop, device)  # [K]
    a = torch.arange(h, device=device)[None, :] - kh[:, None] + (mh - 1) // 2  # [K, H] mask row of position row
    c = torch.arange(w, device=device)[None, :] - kw[:, None] + (mw - 1) // 2  # [K, W]
    inside = ((a >= 0) & (a < mh))[:, :, None] & ((c >= 0) & (c < mw))[:, None, :]  # [K, H, W]
    values = m5[:, a.clamp(0, mh - 1)[:, :, None], c.clamp(0, mw - 1)[:, None, :],
                kh[:, None, None], kw[:, None, None]]  # [B, K, H, W]
    return values.masked_fill(~inside, 0).reshape(b, stop - start, h * w)


def _owner_block_grad(grad: Tensor, start: int, stop: int, mh: int, mw: int, h: int, w: int) -> Tensor:
    """The mask's gradient from rows ``start:stop`` of ``[k, j] = mask[j - k, k]``: the inverse gather.

    ``grad`` is (B, K, N); returns (B, mh * mw, K), the gradient of ``mask[:, :, start:stop]``.
    """
    b, n_k, _ = grad.shape
    device = grad.device
    kh, kw = _pixel_rows_cols(h, w, start, stop, device)  # [K]
    jh = torch.arange(mh, device=device)[:, None] + kh[None, :] - (mh - 1) // 2  # [mh, K] position row of mask row
    jw = torch.arange(mw, device=device)[:, None] + kw[None, :] - (mw - 1) // 2  # [mw, K]
    inside = ((jh >= 0) & (jh < h))[:, None, :] & ((jw >= 0) & (jw < w))[None, :, :]  # [mh, mw, K]
    rows = torch.arange(n_k, device=device)[None, None, :]
    values = grad.reshape(b, n_k, h, w)[:, rows, jh.clamp(0, h - 1)[:, None, :], jw.clamp(0, w - 1)[None, :, :]]
    return values.masked_fill_(~inside, 0).reshape(b, mh * mw, n_k)  # [B, M, K]


def psa_mask(mask: Tensor, psa_type: str, mask_size: Any) -> Tensor:
    """mmcv's ``PSAMask``: the pixels' masks laid out over the whole map, by one gather.

    A zero channel is appended to the mask (for positions a pixel's mask does not reach), and an (N, N)
    index ``[position, pixel]`` -> the mask channel about that position picks every entry. Same arguments,
    result and errors as :func:`psa_mask_reference`; differentiable (the gradient of each mask cell is the
    buffer entry it landed in; cells outside the map get 0). Holds the (B, N, N) buffer it returns and the
    index; :func:`psa_attention` does without them.
    """
    mh, mw = _check(mask, psa_type, mask_size)
    b, _, h, w = mask.shape
    n = h * w
    rows, cols = _pixel_rows_cols(h, w, 0, n, mask.device)  # [N]
    # Position j (rows) of pixel k's (columns) mask: cell (a, c).  [N, N]
    a = rows[:, None] - rows[None, :] + (mh - 1) // 2
    c = cols[:, None] - cols[None, :] + (mw - 1) // 2
    inside = (a >= 0) & (a < mh) & (c >= 0) & (c < mw)
    index = torch.where(inside, a * mw + c, mh * mw)  # mh * mw: the zero channel
    padded = torch.cat([mask.reshape(b, mh * mw, n), mask.new_zeros(b, 1, n)], dim=1)  # [B, mh * mw + 1, N]
    buffer = torch.gather(padded, 1, index.expand(b, n, n))  # [B, position, pixel]: collect's layout
    if psa_type == 'distribute':  # buffer[n, pixel, position]
        buffer = buffer.transpose(1, 2)
    return buffer.reshape(b, n, h, w)


def _check_x(x: Tensor, mask: Tensor) -> None:
    if x.dim() != 4 or x.shape[0] != mask.shape[0] or x.shape[2:] != mask.shape[2:] or x.numel() == 0:
        raise ValueError(f'x must be a non-empty (B, C, H, W) tensor with the batch and spatial size of the mask '
                         f'{tuple(mask.shape)}, got {tuple(x.shape)}')


def psa_attention_reference(x: Tensor, mask: Tensor, psa_type: str, mask_size: Any, softmax: bool = True) -> Tensor:
    """mmsegmentation's PSA aggregation as written: the buffer, its softmax over dim 1, one bmm.

    Args:
        x: the features, (B, C, H, W).
        mask: the masks, (B, mh * mw, H, W).
        psa_type: ``'collect'`` or ``'distribute'``.
        mask_size: (mh, mw).
        softmax: softmax over the buffer's first axis (mmsegmentation's ``psa_softmax``); else the
            buffer weighs the features as it is.

    Returns:
        (B, C, H, W): ``out[:, t] = sum_s x[:, s] Y[s, t]`` (before mmsegmentation's normalisation factor).
    """
    _check(mask, psa_type, mask_size)
    _check_x(x, mask)
    b, c, h, w = x.shape
    y = psa_mask(mask, psa_type, mask_size)  # [B, N, H, W]
    if softmax:
        y = torch.softmax(y, dim=1)
    return torch.bmm(x.reshape(b, c, h * w), y.reshape(b, h * w, h * w)).reshape(b, c, h, w)


def psa_attention_weights(mask: Tensor, psa_type: str, mask_size: Any, softmax: bool = True) -> Tensor:
    """The whole attention matrix, ``[t, s]``: how much pixel t takes from position s (flat indices).

    Row t sums to 1 with ``softmax``. Builds (B, N, N) in float32: for the visualiser, at feature size.

    Returns:
        (B, N, N).
    """
    b, _, h, w = mask.shape
    # The buffer is [source, target] in both layouts (collect: the target's mask, distribute: the source's).
    buffer = psa_mask(mask.float(), psa_type, mask_size).reshape(b, h * w, h * w)
    return (torch.softmax(buffer, dim=1) if softmax else buffer).transpose(1, 2)


def _chunk_len(batch: int, n: int, chunk_size: Optional[int]) -> int:
    if chunk_size is None:
        chunk_size = max(_MIN_CHUNK, DEFAULT_CHUNK_BYTES // max(1, batch * n * 4))
    return min(chunk_size, n)


class _PSAAttention(torch.autograd.Function):
    """``out[:, t] = sum_s x[:, s] P[t, s]`` with ``P[t] = softmax_s(Z[t])`` (or ``Z``), over chunks.

    ``Z[t, s] = mask[s - t, t]`` for ``collect`` (pixel t's own mask: chunks of targets, one pass) and
    ``mask[t - s, s]`` for ``distribute`` (chunks of sources: one pass for each target's log-sum-exp,
    one for the output). Saves x, the mask, the output and the log-sum-exp (B, N); in float16 /
    bfloat16 the logits, their statistics and the accumulators are float32.
    """

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, collect: bool, mh: int, mw: int, softmax: bool,
                chunk: int) -> Tensor:
        b, c, h, w = x.shape
        n = h * w
        stat = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        xf = x.reshape(b, c, n)  # [B, C, N]
        m5 = mask.reshape(b, mh, mw, h, w)
        out = torch.zeros(b, c, n, dtype=stat, device=x.device)  # [B, C, N], t
        lse = torch.zeros(b, n, dtype=stat, device=x.device)  # [B, N], per target
        if collect:  # each chunk holds whole rows P[t, :]
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                z = _owner_block(m5, start, stop).to(stat)  # [B, T, N] Z[t, s]
                if softmax:
                    top = z.amax(dim=2, keepdim=True)  # [B, T, 1]
                    p = z.sub_(top).exp_()
                    total = p.sum(dim=2, keepdim=True)  # [B, T, 1]
                    part = torch.bmm(xf, p.to(x.dtype).transpose(1, 2)).to(stat)  # [B, C, T]
                    out[:, :, start:stop] = part.div_(total.transpose(1, 2))
                    lse[:, start:stop] = (top + total.log()).squeeze(2)
                else:
                    out[:, :, start:stop] = torch.bmm(xf, z.to(x.dtype).transpose(1, 2)).to(stat)
                del z
        else:  # each chunk holds rows of Z^T: sources s, all targets t
            if softmax:  # pass 1: running max and sum over the sources, per target
                top = torch.full((b, n), float('-inf'), dtype=stat, device=x.device)
                total = torch.zeros(b, n, dtype=stat, device=x.device)
                for start in range(0, n, chunk):
                    z = _owner_block(m5, start, min(start + chunk, n)).to(stat)  # [B, S, N] Z[t, s]^T
                    new_top = torch.maximum(top, z.amax(dim=1))  # [B, N]
                    total = total * (top - new_top).exp() + z.sub_(new_top[:, None, :]).exp_().sum(dim=1)
                    top = new_top
                    del z
                lse = top + total.log()
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                z = _owner_block(m5, start, stop).to(stat)  # [B, S, N]
                p = z.sub_(lse[:, None, :]).exp_() if softmax else z
                out.add_(torch.bmm(xf[:, :, start:stop], p.to(x.dtype)))  # [B, C, S] @ [B, S, N]
                del z, p
        out = out.to(x.dtype)
        ctx.save_for_backward(x, mask, out, lse)
        ctx.options = (collect, mh, mw, softmax, chunk)
        return out.reshape(b, c, h, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, mask, out, lse = ctx.saved_tensors
        collect, mh, mw, softmax, chunk = ctx.options
        b, c, h, w = x.shape
        n = h * w
        stat = lse.dtype
        xf = x.reshape(b, c, n)
        m5 = mask.reshape(b, mh, mw, h, w)
        g = grad_out.reshape(b, c, n).to(x.dtype)  # [B, C, N]
        # delta_t = sum_s P[t, s] dP[t, s] = sum_c dOut[c, t] Out[c, t]: the softmax backward term.  [B, N]
        delta = (g.to(stat) * out.to(stat)).sum(dim=1) if softmax else None
        grad_x = torch.zeros(b, c, n, dtype=stat, device=x.device)
        grad_mask = torch.empty(b, mh * mw, n, dtype=stat, device=x.device)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            z = _owner_block(m5, start, stop).to(stat)  # [B, K, N]
            if collect:  # rows: targets t of the chunk
                p = z.sub_(lse[:, start:stop, None]).exp_() if softmax else z  # [B, T, N]
                g_t = g[:, :, start:stop]  # [B, C, T]
                grad_x.baddbmm_(g_t.to(stat), p)  # [B, C, T] @ [B, T, N]
                grad_p = torch.bmm(g_t.transpose(1, 2), xf).to(stat)  # [B, T, N]
                grad_z = p.mul_(grad_p.sub_(delta[:, start:stop, None])) if softmax else grad_p
            else:  # rows: sources s of the chunk, columns: every target t
                p = z.sub_(lse[:, None, :]).exp_() if softmax else z  # [B, S, N]
                grad_x[:, :, start:stop] = torch.bmm(g, p.to(x.dtype).transpose(1, 2)).to(stat)  # [B, C, S]
                grad_p = torch.bmm(xf[:, :, start:stop].transpose(1, 2), g).to(stat)  # [B, S, N]
                grad_z = p.mul_(grad_p.sub_(delta[:, None, :])) if softmax else grad_p
            grad_mask[:, :, start:stop] = _owner_block_grad(grad_z, start, stop, mh, mw, h, w)
            del z, p, grad_p, grad_z
        return (grad_x.to(x.dtype).reshape(x.shape), grad_mask.to(mask.dtype).reshape(mask.shape),
                None, None, None, None, None)


def psa_attention(x: Tensor, mask: Tensor, psa_type: str, mask_size: Any, softmax: bool = True,
                  chunk_size: Optional[int] = None) -> Tensor:
    """PSA aggregation, fast path: :func:`psa_attention_reference`'s result without the N x N buffer.

    Args:
        x: the features, (B, C, H, W).
        mask: the masks, (B, mh * mw, H, W).
        psa_type: ``'collect'`` or ``'distribute'``.
        mask_size: (mh, mw).
        softmax: softmax over the sources, for each target (mmsegmentation's ``psa_softmax``).
        chunk_size: mask-owning pixels per chunk; by default as many as fit a (B, chunk, N) float32
            block of :data:`DEFAULT_CHUNK_BYTES` (at least 16).

    Returns:
        (B, C, H, W), equal to :func:`psa_attention_reference` up to rounding, gradients included.
        Under autocast the inputs are cast to the autocast dtype (like a matmul); the softmax
        statistics stay float32.

    Raises:
        ValueError: bad shapes, ``psa_type`` or ``mask_size``, or a ``chunk_size`` that is not a
            positive integer.
    """
    mh, mw = _check(mask, psa_type, mask_size)
    _check_x(x, mask)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f'chunk_size must be a positive integer or None, got {chunk_size!r}')
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        # Exported graphs take the plain form (a gather, a softmax and a matmul).
        return psa_attention_reference(x, mask, psa_type, (mh, mw), softmax)
    device_type = x.device.type
    cast = torch.is_autocast_enabled(device_type) and x.is_floating_point()
    if cast:
        dtype = torch.get_autocast_dtype(device_type)
        x, mask = x.to(dtype), mask.to(dtype)
    elif mask.dtype != x.dtype:
        mask = mask.to(x.dtype)
    chunk = _chunk_len(x.shape[0], x.shape[2] * x.shape[3], chunk_size)
    with torch.autocast(device_type, enabled=False) if cast else contextlib.nullcontext():
        return _PSAAttention.apply(x, mask, psa_type == 'collect', mh, mw, bool(softmax), chunk)
