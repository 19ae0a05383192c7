"""Position (spatial self-) attention over all pixels: DANet's PAM and the non-local block.

Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019),
https://arxiv.org/abs/1809.02983 -- position attention module, logits unscaled.

Non-local Neural Networks (Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971 --
the embedded-Gaussian block, logits scaled by 1 / sqrt(Cqk) in common implementations.

Both compute, for every pixel p of a (B, C, H, W) map,
``out_p = sum_j softmax_j(scale * q_p . k_j) v_j`` over all N = H * W pixels.  Written
literally (:func:`position_attention_reference`) this builds the N x N matrix: 4.3 GB per
image in float32 for a 128 x 256 feature map.  The fast paths never hold it whole:

* :func:`position_attention_chunked`: a pure-PyTorch, flash-attention style autograd
  function.  Forward walks over chunks of queries keeping only the output and the per-query
  log-sum-exp; backward recomputes each chunk's probabilities from them.  Peak memory is
  O(chunk * N) and works on any device, any value width.
* :func:`position_attention_sdpa`: ``torch.nn.functional.scaled_dot_product_attention``.
  On CPU its fused (flash) kernel needs contiguous inputs with equal query and value
  widths, so the narrower of q/k and v is zero-padded (exact: zero channels add nothing to
  a dot product, and padded value channels are sliced off).  On CUDA the inputs are passed
  as they are (the memory-efficient backend accepts a value width different from the query
  width).

:func:`position_attention` dispatches per device type as set in
:data:`POSITION_ATTENTION_BACKENDS`; ``docs/benchmarks.md`` holds the CPU measurements behind
the defaults.  The CUDA default is unmeasured (no GPU was available).
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

DEFAULT_CHUNK_BYTES = 64 * 2 ** 20
"""Size of one (B, chunk, N) block of logits the chunked path aims for (64 MiB)."""

_MIN_CHUNK = 16


def _check(q: Tensor, k: Tensor, v: Tensor, scale: float) -> None:
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f'q and k must be (B, Cqk, H, W) of equal shape, got {tuple(q.shape)} '
                         f'and {tuple(k.shape)}')
    if v.dim() != 4 or v.shape[0] != q.shape[0] or v.shape[2:] != q.shape[2:]:
        raise ValueError(f'v must be (B, Cv, H, W) with the batch and spatial size of q '
                         f'{tuple(q.shape)}, got {tuple(v.shape)}')
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
            or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f'scale must be a finite number > 0, got {scale!r}')


def position_attention_reference(q: Tensor, k: Tensor, v: Tensor, scale: float = 1.0) -> Tensor:
    """Literal position attention: softmax(scale * q^T k) applied to v, N x N matrix and all.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).
        scale: factor on the logits (1 for DANet's PAM, 1 / sqrt(Cqk) for non-local).

    Returns:
        (B, Cv, H, W).

    Raises:
        ValueError: if the shapes do not fit together or ``scale`` is not a finite number > 0.
    """
    _check(q, k, v, scale)
    b, _, h, w = q.shape
    q_flat = q.reshape(b, -1, h * w)  # [B, Cqk, N]
    k_flat = k.reshape(b, -1, h * w)  # [B, Cqk, N]
    v_flat = v.reshape(b, -1, h * w)  # [B, Cv, N]
    energy = torch.bmm(q_flat.transpose(1, 2), k_flat) * scale  # [B, N, N]
    attn = torch.softmax(energy, dim=-1)  # [B, N, N], rows: queries
    out = torch.bmm(v_flat, attn.transpose(1, 2))  # [B, Cv, N]
    return out.reshape(b, -1, h, w)  # [B, Cv, H, W]


def _chunk_len(batch: int, n: int, itemsize: int, chunk_size: Optional[int]) -> int:
    if chunk_size is None:
        chunk_size = max(_MIN_CHUNK, DEFAULT_CHUNK_BYTES // max(1, batch * n * itemsize))
    return min(chunk_size, n)


class _ChunkedAttention(torch.autograd.Function):
    """softmax(scale * q^T k) v over query chunks, saving only (q, k, v, out, lse).

    Inputs are flattened: q, k (B, Cqk, N), v (B, Cv, N); the output is (B, Cv, N).  In
    float16 / bfloat16 the logits, the softmax statistics and the gradient accumulators are float32.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, chunk: int) -> Tensor:
        b, _, n = q.shape
        low = q.dtype in (torch.float16, torch.bfloat16)
        stat_dtype = torch.float32 if low else q.dtype
        out = v.new_empty(v.shape)  # [B, Cv, N]
        lse = torch.empty(b, n, dtype=stat_dtype, device=q.device)  # [B, N]
        # The logits are float32 products of the (upcast) queries and keys: rounded to bfloat16, a
        # logit near 100 would be off by up to 0.25.  The value products stay in the inputs' dtype.
        q_stat, k_stat = q.to(stat_dtype), k.to(stat_dtype)  # no-ops unless float16 / bfloat16
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            # Logits of this chunk's queries against every key.  [B, n, N]
            logits = torch.bmm(q_stat[:, :, start:stop].transpose(1, 2), k_stat)
            if scale != 1.0:
                logits.mul_(scale)
            row_max = logits.amax(dim=-1, keepdim=True)  # [B, n, 1]
            probs = logits.sub_(row_max).exp_()  # unnormalised, [B, n, N]
            row_sum = probs.sum(dim=-1, keepdim=True)  # [B, n, 1]
            # [B, Cv, N] @ [B, N, n] -> [B, Cv, n], normalised on the narrow side.
            chunk_out = torch.bmm(v, probs.to(v.dtype).transpose(1, 2))
            out[:, :, start:stop] = chunk_out.div_(row_sum.transpose(1, 2).to(v.dtype))
            lse[:, start:stop] = (row_max + row_sum.log()).squeeze(-1)
            del logits, probs, chunk_out  # free this block before the next one is allocated
        del q_stat, k_stat
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale = scale
        ctx.chunk = chunk
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        q, k, v, out, lse = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        n = q.shape[2]
        acc_dtype = lse.dtype
        grad_out = grad_out.to(v.dtype)
        # delta_p = sum_j P_pj dP_pj = sum_c dOut_cp Out_cp (softmax backward term).  [B, N]
        delta = (grad_out.to(acc_dtype) * out.to(acc_dtype)).sum(dim=1)
        q_acc, k_acc = q.to(acc_dtype), k.to(acc_dtype)  # no-ops unless float16 / bfloat16
        grad_q = torch.empty(q.shape, dtype=acc_dtype, device=q.device)  # [B, Cqk, N]
        grad_k = torch.zeros(k.shape, dtype=acc_dtype, device=k.device)  # [B, Cqk, N]
        grad_v = torch.zeros(v.shape, dtype=acc_dtype, device=v.device)  # [B, Cv, N]
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            logits = torch.bmm(q_acc[:, :, start:stop].transpose(1, 2), k_acc)  # [B, n, N], float32
            if scale != 1.0:
                logits.mul_(scale)
            probs = logits.sub_(lse[:, start:stop, None]).exp_()  # normalised, [B, n, N]
            g_chunk = grad_out[:, :, start:stop]  # [B, Cv, n]
            # dV += dOut_chunk P_chunk.  [B, Cv, n] @ [B, n, N] -> [B, Cv, N]
            grad_v.baddbmm_(g_chunk.to(acc_dtype), probs)
            # dP = dOut_chunk^T V.  [B, n, Cv] @ [B, Cv, N] -> [B, n, N]
            grad_p = torch.bmm(g_chunk.transpose(1, 2), v).to(acc_dtype)
            # dLogits = P * (dP - delta), times scale for q and k.  [B, n, N]
            grad_logits = probs.mul_(grad_p.sub_(delta[:, start:stop, None]))
            # [B, Cqk, N] @ [B, N, n] -> [B, Cqk, n]
            grad_q[:, :, start:stop] = torch.bmm(k_acc, grad_logits.transpose(1, 2)).mul_(scale)
            # [B, Cqk, n] @ [B, n, N] -> [B, Cqk, N]
            grad_k.baddbmm_(q_acc[:, :, start:stop], grad_logits, alpha=scale)
            del logits, probs, grad_p, grad_logits  # free these blocks before the next chunk's
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


def _autocast_inputs(q: Tensor, k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor, Tensor, bool]:
    """Cast to the autocast dtype when autocast is on for the inputs' device type."""
    device_type = q.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        if q.is_floating_point():
            return q.to(dtype), k.to(dtype), v.to(dtype), True
    return q, k, v, False


def position_attention_chunked(q: Tensor, k: Tensor, v: Tensor, scale: float = 1.0,
                               chunk_size: Optional[int] = None) -> Tensor:
    """Position attention over chunks of queries; never holds the N x N matrix.

    Forward keeps, per query, only its output and the log-sum-exp of its logits; backward
    recomputes each chunk's softmax from them (the cheap q^T k product, Cqk wide) instead of
    storing it.  Peak extra memory is a few (B, chunk, N) blocks.  Under autocast the inputs
    are cast to the autocast dtype (like a matmul), softmax statistics stay float32.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).
        scale: factor on the logits.
        chunk_size: queries per chunk; by default as many as fit a (B, chunk, N) block of
            :data:`DEFAULT_CHUNK_BYTES` (at least 16).

    Returns:
        (B, Cv, H, W), equal to :func:`position_attention_reference` up to rounding.

    Raises:
        ValueError: if the shapes do not fit together, ``scale`` is not a finite number > 0
            or ``chunk_size`` is not a positive integer.
    """
    _check(q, k, v, scale)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f'chunk_size must be a positive integer or None, got {chunk_size!r}')
    b, _, h, w = q.shape
    q, k, v, cast = _autocast_inputs(q, k, v)
    itemsize = 4 if q.dtype in (torch.float16, torch.bfloat16) else q.element_size()
    chunk = _chunk_len(b, h * w, itemsize, chunk_size)
    q_flat = q.reshape(b, -1, h * w)  # [B, Cqk, N]
    k_flat = k.reshape(b, -1, h * w)  # [B, Cqk, N]
    v_flat = v.reshape(b, -1, h * w)  # [B, Cv, N]
    with torch.autocast(q.device.type, enabled=False) if cast else contextlib.nullcontext():
        out = _ChunkedAttention.apply(q_flat, k_flat, v_flat, float(scale), chunk)  # [B, Cv, N]
    return out.reshape(b, -1, h, w)  # [B, Cv, H, W]


def position_attention_sdpa(q: Tensor, k: Tensor, v: Tensor, scale: float = 1.0) -> Tensor:
    """Position attention through ``F.scaled_dot_product_attention`` (one head).

    On CPU the fused flash kernel is used only for contiguous inputs of equal query and
    value width, otherwise PyTorch falls back to the math kernel that builds the N x N
    matrix.  So on CPU the narrower side is zero-padded to the wider one: padded q/k
    channels add 0 to every logit, padded v channels are sliced off the output.  On other
    devices the inputs go in unpadded.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).
        scale: factor on the logits.

    Returns:
        (B, Cv, H, W), equal to :func:`position_attention_reference` up to rounding.

    Raises:
        ValueError: if the shapes do not fit together or ``scale`` is not a finite number > 0.
    """
    _check(q, k, v, scale)
    b, c_qk, h, w = q.shape
    c_v = v.shape[1]
    q_seq = q.reshape(b, 1, c_qk, h * w).transpose(2, 3)  # [B, 1, N, Cqk]
    k_seq = k.reshape(b, 1, c_qk, h * w).transpose(2, 3)  # [B, 1, N, Cqk]
    v_seq = v.reshape(b, 1, c_v, h * w).transpose(2, 3)  # [B, 1, N, Cv]
    if q.device.type == 'cpu':
        width = max(c_qk, c_v)
        q_seq = F.pad(q_seq, (0, width - c_qk))  # [B, 1, N, width], contiguous
        k_seq = F.pad(k_seq, (0, width - c_qk))  # [B, 1, N, width]
        v_seq = F.pad(v_seq, (0, width - c_v))  # [B, 1, N, width]
    out = F.scaled_dot_product_attention(q_seq.contiguous(), k_seq.contiguous(), v_seq.contiguous(),
                                         scale=float(scale))  # [B, 1, N, width]
    out = out[..., :c_v].transpose(2, 3)  # [B, 1, Cv, N]
    return out.reshape(b, c_v, h, w)  # [B, Cv, H, W]


def _position_attention_auto(q: Tensor, k: Tensor, v: Tensor, scale: float = 1.0) -> Tensor:
    """SDPA when no padding is needed (Cqk == Cv), the chunked path otherwise."""
    if q.shape[1] == v.shape[1]:
        return position_attention_sdpa(q, k, v, scale)
    return position_attention_chunked(q, k, v, scale)


POSITION_ATTENTION_IMPLS: Dict[str, Callable[..., Tensor]] = {
    'auto': _position_attention_auto,
    'chunked': position_attention_chunked,
    'sdpa': position_attention_sdpa,
}
"""Exact, memory-efficient implementations :func:`position_attention` can dispatch to."""

POSITION_ATTENTION_BACKENDS: Dict[str, str] = {
    # Measured on a 2-core CPU (docs/benchmarks.md).
    'cpu': 'auto',
    # Unmeasured (no GPU was available): SDPA picks flash / memory-efficient kernels.
    'cuda': 'sdpa',
}
"""Implementation used per ``device.type``; a device type not listed uses ``'chunked'``."""


def set_position_attention_backend(device_type: str, name: str) -> None:
    """Choose the implementation :func:`position_attention` uses on a device type.

    Args:
        device_type: a ``torch.device.type`` such as ``'cpu'`` or ``'cuda'``.
        name: one of the keys of :data:`POSITION_ATTENTION_IMPLS`.

    Raises:
        ValueError: if ``name`` is not a known implementation.
    """
    if name not in POSITION_ATTENTION_IMPLS:
        raise ValueError(f'unknown position-attention implementation {name!r}; valid names are: '
                         f"{', '.join(sorted(POSITION_ATTENTION_IMPLS))}")
    POSITION_ATTENTION_BACKENDS[device_type] = name


def position_attention(q: Tensor, k: Tensor, v: Tensor, scale: float = 1.0) -> Tensor:
    """Position attention, fast path: never builds the (H*W) x (H*W) matrix at once.

    ``out_p = sum_j softmax_j(scale * q_p . k_j) v_j`` over all H * W pixels, through the
    implementation chosen for ``q.device.type`` in :data:`POSITION_ATTENTION_BACKENDS`.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        v: values, (B, Cv, H, W).
        scale: factor on the logits (1 for DANet's PAM, 1 / sqrt(Cqk) for non-local).

    Returns:
        (B, Cv, H, W).

    Raises:
        ValueError: if the shapes do not fit together or ``scale`` is not a finite number > 0.
    """
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        # Exported graphs (ONNX) take the plain form; the exporter and the runtime fuse it as they can.
        return position_attention_reference(q, k, v, scale)
    impl = POSITION_ATTENTION_IMPLS[POSITION_ATTENTION_BACKENDS.get(q.device.type, 'chunked')]
    return impl(q, k, v, scale)


def position_attention_row(q: Tensor, k: Tensor, i: int, j: int, scale: float = 1.0) -> Tensor:
    """Pixel (i, j)'s row of the attention matrix ``softmax_n(scale * q_p . k_n)``, as a map.

    Args:
        q: queries, (B, Cqk, H, W).
        k: keys, (B, Cqk, H, W).
        i, j: the pixel.
        scale: factor on the logits (1 for DANet's PAM, 1 / sqrt(Cqk) for non-local).

    Returns:
        (B, H, W) weights summing to 1: how much pixel (i, j) draws from every pixel.

    Raises:
        ValueError: on bad shapes or a pixel outside the map.
    """
    if q.dim() != 4 or q.shape != k.shape:
        raise ValueError(f'q and k must be (B, C, H, W) of equal shape, got {tuple(q.shape)} and {tuple(k.shape)}')
    b, _, h, w = q.shape
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'pixel (row {i}, col {j}) is outside the {h}x{w} map')
    logits = torch.einsum('bc,bcn->bn', q[:, :, i, j], k.flatten(2)) * scale  # [B, N]
    return torch.softmax(logits, dim=1).reshape(b, h, w)  # [B, H, W]
