"""Exactness of the fast attention ops against their references (seg.ops).

Fast paths agree with the references within 1e-5 in float32 on outputs and on the gradients
of every input, pass float64 gradcheck, and under CPU bfloat16 autocast stay within 3e-2 of
the float32 reference relative to its largest magnitude (bfloat16 keeps 8 significant bits,
a relative step of 2**-8 ~ 0.4%).  The position-attention fast paths are also checked to
never hold the (H*W) x (H*W) matrix, with the profiler-based peak-memory measurement.
"""
from __future__ import annotations

import math
from typing import Callable, List, Sequence, Tuple

import pytest
import torch

from seg.analysis.measure import peak_memory
from seg.ops import (
    channel_attention,
    channel_attention_reference,
    criss_cross_attention,
    criss_cross_attention_einsum,
    criss_cross_attention_lse,
    criss_cross_attention_reference,
    position_attention,
    position_attention_chunked,
    position_attention_reference,
    position_attention_sdpa,
    set_criss_cross_backend,
    set_position_attention_backend,
)
from seg.ops import criss_cross as cc_module
from seg.ops import self_attention as sa_module

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

# (B, H, W): square, not square, a single row, a single column, a single pixel.
SHAPES = [(2, 4, 4), (1, 3, 5), (2, 1, 6), (1, 5, 1), (1, 1, 1)]


def _qkv(b: int, c_qk: int, c_v: int, h: int, w: int, dtype=torch.float32, device='cpu',
         seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, c_qk, h, w, generator=gen, dtype=dtype) * 0.7
    k = torch.randn(b, c_qk, h, w, generator=gen, dtype=dtype) * 0.7
    v = torch.randn(b, c_v, h, w, generator=gen, dtype=dtype)
    return q.to(device), k.to(device), v.to(device)


def _out_and_grads(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
                   grad_out: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.float().backward(grad_out)
    return out.detach(), [t.grad for t in leaves]


def _assert_matches(fast: Callable, ref: Callable, inputs: Sequence[torch.Tensor], atol: float = 1e-5,
                    rtol: float = 1e-5) -> None:
    """Outputs and the gradients of every input agree."""
    with torch.no_grad():
        expected = ref(*inputs)
    grad_out = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(expected)
    out_f, grads_f = _out_and_grads(fast, inputs, grad_out)
    out_r, grads_r = _out_and_grads(ref, inputs, grad_out)
    assert out_f.shape == expected.shape
    torch.testing.assert_close(out_f, out_r, atol=atol, rtol=rtol)
    for name, g_f, g_r in zip('qkv', grads_f, grads_r):
        torch.testing.assert_close(g_f, g_r, atol=atol, rtol=rtol, msg=lambda m, n=name: f'grad of {n}: {m}')


def _assert_bf16_close(fast: Callable, ref: Callable, inputs: Sequence[torch.Tensor], tol: float = 3e-2) -> None:
    """Under CPU bfloat16 autocast, within tol * max|reference| on outputs and gradients."""
    with torch.no_grad():
        expected = ref(*inputs)
    grad_out = torch.randn(expected.shape, generator=torch.Generator().manual_seed(2))
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = fast(*leaves)
    assert out.dtype == torch.bfloat16
    out.float().backward(grad_out)
    out_r, grads_r = _out_and_grads(ref, inputs, grad_out)
    assert (out.float() - out_r).abs().max() <= tol * out_r.abs().max()
    for leaf, g_r in zip(leaves, grads_r):
        assert leaf.grad.dtype == torch.float32
        assert (leaf.grad - g_r).abs().max() <= tol * g_r.abs().max()


# ----------------------------------------------------------------------------- criss-cross

CC_FAST = [criss_cross_attention, criss_cross_attention_einsum, criss_cross_attention_lse]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('fast', CC_FAST, ids=lambda f: f.__name__)
@pytest.mark.parametrize('b,h,w', SHAPES)
def test_criss_cross_matches_loop_reference(fast, b, h, w, device):
    inputs = _qkv(b, 3, 5, h, w, device=device)
    _assert_matches(fast, criss_cross_attention_reference, inputs)


def test_criss_cross_counts_the_pixel_once():
    # With equal logits everywhere, each pixel averages its H + W - 1 criss-cross values.
    h, w = 3, 4
    q = torch.zeros(1, 2, h, w)
    v = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    expected = torch.empty(1, 1, h, w)
    for i in range(h):
        for j in range(w):
            expected[0, 0, i, j] = (v[0, 0, i, :].sum() + v[0, 0, :, j].sum() - v[0, 0, i, j]) / (h + w - 1)
    for fn in CC_FAST + [criss_cross_attention_reference]:
        torch.testing.assert_close(fn(q, q, v), expected)


@pytest.mark.parametrize('fast', [criss_cross_attention_einsum, criss_cross_attention_lse],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize('h,w', [(3, 4), (1, 3), (3, 1)])
def test_criss_cross_gradcheck(fast, h, w):
    inputs = [t.requires_grad_() for t in _qkv(2, 2, 3, h, w, dtype=torch.float64)]
    assert torch.autograd.gradcheck(fast, inputs)


@pytest.mark.parametrize('fast', CC_FAST, ids=lambda f: f.__name__)
def test_criss_cross_bf16_autocast(fast):
    _assert_bf16_close(fast, criss_cross_attention_reference, _qkv(2, 4, 6, 5, 6))


def test_criss_cross_dispatch_follows_the_backend_table(monkeypatch):
    calls = []

    def spy(q, k, v):
        calls.append(q.device.type)
        return criss_cross_attention_einsum(q, k, v)

    monkeypatch.setitem(cc_module.CRISS_CROSS_IMPLS, 'lse', spy)
    monkeypatch.setitem(cc_module.CRISS_CROSS_BACKENDS, 'cpu', 'einsum')
    criss_cross_attention(*_qkv(1, 2, 2, 3, 3))
    assert calls == []
    set_criss_cross_backend('cpu', 'lse')
    criss_cross_attention(*_qkv(1, 2, 2, 3, 3))
    assert calls == ['cpu']


def test_criss_cross_bad_input():
    q, k, v = _qkv(1, 2, 3, 4, 5)
    for fn in CC_FAST:
        with pytest.raises(ValueError, match='q and k'):
            fn(q, k[:, :1], v)
        with pytest.raises(ValueError, match='v must be'):
            fn(q, k, v[..., :4])
    with pytest.raises(ValueError, match="valid names are: einsum, lse"):
        set_criss_cross_backend('cpu', 'kernel')


# ----------------------------------------------------------------------------- position attention

def _chunked(chunk_size):
    def fn(q, k, v, scale=1.0):
        return position_attention_chunked(q, k, v, scale, chunk_size=chunk_size)
    fn.__name__ = f'chunked_{chunk_size}'
    return fn


PA_FAST = [position_attention, position_attention_sdpa, _chunked(None), _chunked(1), _chunked(7)]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('fast', PA_FAST, ids=lambda f: f.__name__)
@pytest.mark.parametrize('c_qk,c_v', [(4, 6), (5, 5), (6, 3)])
@pytest.mark.parametrize('b,h,w', SHAPES)
def test_position_attention_matches_reference(fast, c_qk, c_v, b, h, w, device):
    inputs = _qkv(b, c_qk, c_v, h, w, device=device)
    for scale in (1.0, c_qk ** -0.5):
        _assert_matches(lambda q, k, v, s=scale: fast(q, k, v, s),
                        lambda q, k, v, s=scale: position_attention_reference(q, k, v, s), inputs)


def test_position_attention_reference_is_literal():
    q, k, v = _qkv(1, 3, 2, 2, 3, dtype=torch.float64)
    n = 6
    qf, kf, vf = q.view(3, n), k.view(3, n), v.view(2, n)
    expected = torch.empty(2, n, dtype=torch.float64)
    for p in range(n):
        logits = torch.tensor([0.5 * float(qf[:, p] @ kf[:, j]) for j in range(n)], dtype=torch.float64)
        weights = logits.exp() / logits.exp().sum()
        expected[:, p] = (vf * weights).sum(dim=1)
    torch.testing.assert_close(position_attention_reference(q, k, v, 0.5), expected.view(1, 2, 2, 3))


def test_position_attention_non_contiguous_inputs():
    q, k, v = _qkv(2, 8, 12, 5, 6)
    q, k, v = q[:, ::2], k[:, 1::2], v.transpose(2, 3).contiguous().transpose(2, 3)  # strided views
    for fast in PA_FAST:
        torch.testing.assert_close(fast(q, k, v, 0.3), position_attention_reference(q, k, v, 0.3),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('fast', [position_attention_sdpa, _chunked(4)], ids=lambda f: f.__name__)
@pytest.mark.parametrize('c_qk,c_v', [(2, 3), (3, 2)])
def test_position_attention_gradcheck(fast, c_qk, c_v):
    inputs = [t.requires_grad_() for t in _qkv(2, c_qk, c_v, 3, 3, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda q, k, v: fast(q, k, v, 0.8), inputs)


@pytest.mark.parametrize('fast', PA_FAST[:3], ids=lambda f: f.__name__)
@pytest.mark.parametrize('c_qk,c_v', [(4, 8), (8, 8)])
def test_position_attention_bf16_autocast(fast, c_qk, c_v):
    _assert_bf16_close(lambda q, k, v: fast(q, k, v, c_qk ** -0.5),
                       lambda q, k, v: position_attention_reference(q, k, v, c_qk ** -0.5),
                       _qkv(2, c_qk, c_v, 5, 6))


@pytest.mark.parametrize('fast', PA_FAST[:3], ids=lambda f: f.__name__)
@pytest.mark.parametrize('c_qk,c_v', [(8, 16), (16, 16)])
def test_position_attention_never_holds_the_full_matrix(fast, c_qk, c_v, monkeypatch):
    # N = 64 * 64 pixels: the float32 N x N matrix is 64 MiB, as large as the chunked path's
    # default block, which is therefore shrunk to 4 MiB (256 query rows).
    monkeypatch.setattr(sa_module, 'DEFAULT_CHUNK_BYTES', 4 * 2 ** 20)
    q, k, v = [t.requires_grad_() for t in _qkv(1, c_qk, c_v, 64, 64)]
    matrix_bytes = (64 * 64) ** 2 * 4

    def step(fn):
        def run():
            fn(q, k, v, 1.0).sum().backward()
        return run

    _, ref_peak = peak_memory(step(position_attention_reference))
    _, fast_peak = peak_memory(step(fast))
    assert ref_peak >= 2 * matrix_bytes  # the measurement sees the reference's matrices
    assert fast_peak <= matrix_bytes / 4, f'{fast.__name__} peaked at {fast_peak / 2**20:.1f} MiB'


def test_chunked_peak_memory_follows_chunk_size():
    q, k, v = _qkv(1, 4, 4, 32, 32)  # N = 1024
    with torch.no_grad():
        _, small = peak_memory(lambda: position_attention_chunked(q, k, v, chunk_size=32))
        _, large = peak_memory(lambda: position_attention_chunked(q, k, v, chunk_size=512))
    # A (1, chunk, N) float32 block is 128 KiB at chunk 32 and 2 MiB at chunk 512.
    assert small < 1 * 2 ** 20 < 2 * 2 ** 20 <= large


def test_position_attention_dispatch_follows_the_backend_table(monkeypatch):
    calls = []

    def spy(q, k, v, scale=1.0):
        calls.append(scale)
        return position_attention_reference(q, k, v, scale)

    monkeypatch.setitem(sa_module.POSITION_ATTENTION_IMPLS, 'chunked', spy)
    monkeypatch.setitem(sa_module.POSITION_ATTENTION_BACKENDS, 'cpu', 'sdpa')
    position_attention(*_qkv(1, 2, 3, 3, 3), scale=0.5)
    assert calls == []
    set_position_attention_backend('cpu', 'chunked')
    position_attention(*_qkv(1, 2, 3, 3, 3), scale=0.5)
    assert calls == [0.5]


def test_position_attention_bad_input():
    q, k, v = _qkv(1, 2, 3, 4, 5)
    for fn in PA_FAST + [position_attention_reference]:
        with pytest.raises(ValueError, match='q and k'):
            fn(q[0], k[0], v[0])
        with pytest.raises(ValueError, match='v must be'):
            fn(q, k, v[:, :, :2])
        for bad in (0.0, -1.0, math.inf, math.nan, '1'):
            with pytest.raises(ValueError, match='scale must be'):
                fn(q, k, v, bad)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match='chunk_size'):
            position_attention_chunked(q, k, v, chunk_size=bad)
    with pytest.raises(ValueError, match='valid names are: auto, chunked, sdpa'):
        set_position_attention_backend('cpu', 'flash')


def test_chunked_is_once_differentiable():
    q, k, v = [t.requires_grad_() for t in _qkv(1, 2, 2, 2, 2, dtype=torch.float64)]
    out = position_attention_chunked(q, k, v)
    # Second-order gradients are not implemented: asking for them fails loudly, never silently.
    grad_out = torch.ones_like(out, requires_grad=True)
    (grad_q,) = torch.autograd.grad(out, q, grad_out, create_graph=True)
    with pytest.raises(RuntimeError, match='twice'):
        grad_q.sum().backward()


# ----------------------------------------------------------------------------- channel attention

@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('b,h,w', SHAPES)
def test_channel_attention_matches_reference(b, h, w, device):
    (x,) = _qkv(b, 6, 1, h, w, device=device)[:1]
    _assert_matches(channel_attention, channel_attention_reference, [x])


def test_channel_attention_reference_is_literal():
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    flat = x.view(3, 4)
    energy = flat @ flat.T
    shifted = energy.max(dim=1, keepdim=True).values - energy
    attn = shifted.exp() / shifted.exp().sum(dim=1, keepdim=True)
    torch.testing.assert_close(channel_attention_reference(x), (attn @ flat).view(1, 3, 2, 2))


def test_channel_attention_gradcheck():
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(channel_attention, [x])


def test_channel_attention_bf16_autocast():
    _assert_bf16_close(channel_attention, channel_attention_reference, [torch.randn(2, 8, 5, 6) * 0.3])


def test_channel_attention_bad_input():
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        channel_attention(torch.zeros(2, 3, 4))


# ----------------------------------------------------------------------------- memory measurement

def test_peak_memory_counts_live_tensor_bytes():
    def fn():
        a = torch.ones(2 ** 20)  # 4 MiB
        b = torch.ones(2 ** 19)  # 2 MiB, both alive: 6 MiB
        del a
        c = torch.ones(2 ** 19)  # 2 MiB after a is freed: 4 MiB
        return b, c

    (b, c), peak = peak_memory(fn)
    assert peak == 6 * 2 ** 20
    with pytest.raises(ValueError, match="'cpu' and 'cuda'"):
        peak_memory(lambda: None, 'meta')


@needs_cuda
def test_peak_memory_cuda():
    _, peak = peak_memory(lambda: torch.ones(2 ** 20, device='cuda'), 'cuda')
    assert peak >= 4 * 2 ** 20


# ------------------------------------------------------------------ low precision keeps float32 logits
def test_low_precision_energies_and_logits_are_float32():
    """With bf16 inputs the energies / logits are float32 products: the weights equal those computed in
    float64 from the same (bf16-rounded) inputs. Rounded to bf16, CAM energies near 8192 would be off by
    up to 32 and criss-cross / PAM logits near 40 by up to 0.125, which moves the weights by percents."""
    from seg.ops import channel_attention_weights, criss_cross_weights

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 64, 128, generator=g).bfloat16()  # E: diagonal near N = 8192
    cam = channel_attention_weights(x)
    assert cam.dtype == torch.float32
    assert (cam.double() - channel_attention_weights(x.double())).abs().max() < 1e-4
    q = (torch.randn(1, 64, 12, 16, generator=g) * 2).bfloat16()  # logits with std 32
    k = (torch.randn(1, 64, 12, 16, generator=g) * 2).bfloat16()
    cc = criss_cross_weights(q, k)
    assert cc.dtype == torch.float32
    assert (cc.double() - criss_cross_weights(q.double(), k.double())).abs().max() < 1e-4
    with torch.autocast('cpu', dtype=torch.bfloat16):  # training: the same, under autocast
        assert (criss_cross_weights(q.float(), k.float()).double()
                - criss_cross_weights(q.double(), k.double())).abs().max() < 1e-4
    v = torch.randn(1, 32, 12, 16, generator=g).bfloat16()
    expected = position_attention_reference(q.double(), k.double(), v.double())
    got = position_attention_chunked(q, k, v, chunk_size=32)
    # The output is bf16 (8 bits): within its rounding and that of the bf16 weights on v.
    assert ((got.double() - expected).norm() / expected.norm()) < 8e-3
