"""EMANet's EMA unit and head, ISANet's interlaced sparse self-attention and head.

Each module against a literal re-computation of its paper's formulas on hand-set weights in float64
(the reference below is written independently of the implementation: explicit softmaxes, strided
slices for the interlaced groups, explicit zero padding), the bases' momentum update in training
(averaged over the processes of a distributed run), eval never updating them, and the attention maps
against the matrices they are rows of. mmsegmentation's own logits are in tests/test_convert.py.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import seg.models.attention.ema as ema_module
from seg.models.attention import EMA, ISA, build_attention
from seg.models.heads import EMAHead, ISAHead
from seg.registry import ATTENTION, MODELS

from .conftest import randomize

C = 16


def double_input(b=2, c=C, h=7, w=9, seed=1):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def conv1x1(x, conv):
    out = torch.einsum('oc,bchw->bohw', conv.weight[:, :, 0, 0], x)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


def bn(x, norm):
    """Eval-mode batch norm."""
    shape = (1, -1, 1, 1)
    return ((x - norm.running_mean.view(shape)) / torch.sqrt(norm.running_var.view(shape) + norm.eps)
            * norm.weight.view(shape) + norm.bias.view(shape))


def conv_bn_relu(x, block):
    return torch.relu(bn(conv1x1(x, block[0]), block[1]))


# ---------------------------------------------------------------------------------------------
# EMA

def em_reference(feats, bases, stages):
    """The EM of the paper, literally: feats (B, C, N), bases (B, C, K) -> (bases, z)."""
    for _ in range(stages):
        logits = torch.einsum('bcn,bck->bnk', feats, bases)
        z = torch.exp(logits - logits.amax(dim=2, keepdim=True))
        z = z / z.sum(dim=2, keepdim=True)  # E step: softmax over the bases
        mu = torch.einsum('bcn,bnk->bck', feats, z / z.sum(dim=1, keepdim=True))  # M step: weighted means
        bases = mu / mu.norm(dim=1, keepdim=True)
    return bases, z


def ema_reference(m: EMA, x):
    b, c, h, w = x.shape
    feats = (torch.einsum('oc,bchw->bohw', m.mid_weight[:, :, 0, 0], x) + m.mid_bias.view(1, -1, 1, 1)).flatten(2)
    bases, z = em_reference(feats, m.bases.expand(b, -1, -1), m.num_stages)
    recon = torch.einsum('bck,bnk->bcn', bases, z).reshape(b, c, h, w)
    return torch.relu(x + bn(conv1x1(torch.relu(recon), m.conv_out), m.norm)), bases


def test_ema_registered_and_used_by_the_head():
    assert ATTENTION.get('ema') is EMA and EMA.__mro__[1].__name__ == 'AttentionModule'
    head = EMAHead(24, 8, 3, ema_channels=C)
    assert type(head.context) is EMA and head.context.channels == C
    assert EMAHead(24, 8, 3).context.channels == 16  # ema_channels defaults to 2 * channels


@pytest.mark.parametrize('num_stages', [1, 3])
def test_ema_matches_the_literal_em(num_stages):
    m = randomize(EMA(C, num_bases=5, num_stages=num_stages)).double().eval()
    x = double_input()
    expected, _ = ema_reference(m, x)
    torch.testing.assert_close(m(x), expected)


def test_ema_training_moves_the_bases_by_momentum_and_eval_never_does():
    torch.manual_seed(0)
    m = randomize(EMA(C, num_bases=6, momentum=0.3)).double()
    x = double_input(b=3)
    old = m.bases.clone()
    _, final = ema_reference(m.eval(), x)  # the EM's final bases per image, from the old bases
    m.train()(x)
    mean = final.mean(dim=0, keepdim=True)
    torch.testing.assert_close(m.bases, 0.7 * old + 0.3 * mean / mean.norm(dim=1, keepdim=True))
    assert not torch.allclose(m.bases, old)
    moved = m.bases.clone()
    m.eval()
    with torch.no_grad():
        y1, y2 = m(x), m(x)
    assert torch.equal(y1, y2) and torch.equal(m.bases, moved)  # eval: deterministic, no update
    m.momentum = 0.0
    m.train()(x)
    torch.testing.assert_close(m.bases, moved)


def test_ema_bases_are_averaged_over_the_processes(monkeypatch):
    """With torch.distributed initialised the batch mean is averaged over the ranks (all_reduce of
    mean / world_size), then L2-normalised; here a second rank is simulated."""
    m = randomize(EMA(C, num_bases=4, momentum=0.5)).double()
    x = double_input()
    other = F.normalize(torch.randn(1, C, 4, dtype=torch.float64), dim=1)  # the other rank's batch mean
    calls = []

    def all_reduce(tensor, op=None):
        calls.append(op)
        tensor.add_(other / 2)

    monkeypatch.setattr(ema_module.dist, 'is_available', lambda: True)
    monkeypatch.setattr(ema_module.dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(ema_module.dist, 'get_world_size', lambda: 2)
    monkeypatch.setattr(ema_module.dist, 'all_reduce', all_reduce)
    old = m.bases.clone()
    _, final = ema_reference(m.eval(), x)
    m.train()(x)
    mean = (final.mean(dim=0, keepdim=True) + other) / 2
    torch.testing.assert_close(m.bases, 0.5 * old + 0.5 * mean / mean.norm(dim=1, keepdim=True))
    assert calls == [ema_module.dist.ReduceOp.SUM]
    m.eval()(x)
    assert len(calls) == 1  # eval never communicates


def test_ema_fixed_projection_is_a_buffer_and_no_gradient_runs_through_the_em():
    m = randomize(EMA(C, num_bases=4))
    assert {'bases', 'mid_weight', 'mid_bias'} <= set(dict(m.named_buffers()))
    assert set(dict(m.named_parameters())) == {'conv_out.weight', 'norm.weight', 'norm.bias'}
    x = torch.randn(2, C, 5, 6, requires_grad=True)
    m.train()
    y = m(x)
    y.sum().backward()
    # relu(x + r) with r independent of x: the gradient is the ReLU's mask
    torch.testing.assert_close(x.grad, (y > 0).float())


def test_ema_runs_the_em_in_float32_under_autocast():
    m = randomize(EMA(C, num_bases=8)).eval()
    x = torch.randn(2, C, 7, 9)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = m(x)
    assert ((y.float() - ref).abs().max() / ref.abs().max()) < 3e-2


@pytest.mark.parametrize('kw, match', [
    (dict(num_bases=0), 'EMA: num_bases must be an integer >= 1, got 0'),
    (dict(num_stages=0), 'EMA: num_stages must be an integer >= 1, got 0'),
    (dict(num_stages=2.0), 'num_stages must be an integer'),
    (dict(momentum=1.5), r'EMA: momentum must be a number in \[0, 1\], got 1.5'),
    (dict(momentum=-0.1), 'momentum must be a number in'),
    (dict(momentum=True), 'momentum must be a number in'),
    (dict(norm='LN'), "EMA: norm must be one of BN.*got 'LN'"),
])
def test_ema_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        build_attention('ema', C, **kw)


def test_ema_head_bad_options():
    with pytest.raises(ValueError, match='EMAHead: ema_channels must be an integer >= 1, got 0'):
        EMAHead(8, 8, 2, ema_channels=0)
    with pytest.raises(ValueError, match="EMAHead: concat_input must be a bool, got 'yes'"):
        EMAHead(8, 8, 2, concat_input='yes')
    with pytest.raises(ValueError, match='EMA: num_stages'):
        EMAHead(8, 8, 2, num_stages=0)


def test_ema_maps_are_the_responsibilities():
    m = randomize(EMA(C, num_bases=6)).double().eval()
    x = double_input(b=1, h=5, w=6)
    feats = (torch.einsum('oc,bchw->bohw', m.mid_weight[:, :, 0, 0], x) + m.mid_bias.view(1, -1, 1, 1)).flatten(2)
    bases, z = em_reference(feats, m.bases.expand(1, -1, -1), m.num_stages)
    maps = m.maps({'': [x]}, lambda h, w: (2, 3))
    torch.testing.assert_close(maps['assignment'].values, z[0].argmax(dim=1).reshape(5, 6).to(torch.float64))
    bases_drawn = [k for k in maps if k.startswith('base')]
    assert len(bases_drawn) == 4
    for key in bases_drawn:
        k = int(key[4:])
        assert maps[key].kind == 'spatial'
        torch.testing.assert_close(maps[key].values, z[0, :, k].reshape(5, 6))
    # the point's row: its reconstruction is exactly the row-weighted sum of the projected features
    row = maps['row'].values.reshape(-1)
    recon = torch.einsum('ck,k->c', bases[0], z[0, 2 * 6 + 3])
    torch.testing.assert_close(feats[0] @ row, recon)
    assert 'row' not in m.maps({'': [x]})


# ---------------------------------------------------------------------------------------------
# ISA

def relation_reference(rel, x):
    """One relation over a (B, C, h, w) group: the scaled softmax over its pixels, literally."""
    q = conv_bn_relu(conv_bn_relu(x, rel.query[0]), rel.query[1]).flatten(2)  # [B, Ci, n]
    k = conv_bn_relu(conv_bn_relu(x, rel.key[0]), rel.key[1]).flatten(2)
    v = conv1x1(x, rel.value).flatten(2)  # [B, C, n]
    logits = torch.einsum('bci,bcj->bij', q, k) / math.sqrt(q.shape[1])
    a = torch.exp(logits - logits.amax(dim=2, keepdim=True))
    a = a / a.sum(dim=2, keepdim=True)
    return conv_bn_relu(torch.einsum('bij,bcj->bci', a, v).reshape(x.shape), rel.out)


def isa_reference(m: ISA, x):
    b, c, h, w = x.shape
    lh, lw = m.down_factor
    hp, wp = math.ceil(h / lh) * lh, math.ceil(w / lw) * lw
    top, left = (hp - h) // 2, (wp - w) // 2  # half the padding before, the rest after
    xp = x.new_zeros(b, c, hp, wp)
    xp[:, :, top:top + h, left:left + w] = x
    y = torch.empty_like(xp)
    for u in range(lh):  # the interlaced group of offset (u, v): every lh-th row, every lw-th column
        for v in range(lw):
            y[:, :, u::lh, v::lw] = relation_reference(m.global_relation, xp[:, :, u::lh, v::lw])
    z = torch.empty_like(y)
    for i in range(0, hp, lh):  # the blocks
        for j in range(0, wp, lw):
            z[:, :, i:i + lh, j:j + lw] = relation_reference(m.local_relation, y[:, :, i:i + lh, j:j + lw])
    return z[:, :, top:top + h, left:left + w]


def test_isa_registered_and_used_by_the_head():
    assert ATTENTION.get('isa') is ISA and ISA.__mro__[1].__name__ == 'AttentionModule'
    head = ISAHead(24, C, 3, isa_channels=4, down_factor=(2, 3))
    assert type(head.context) is ISA and head.context.isa_channels == 4 and head.context.down_factor == (2, 3)
    assert ISAHead(24, C, 3).context.isa_channels == C // 2


@pytest.mark.parametrize('hw, down_factor', [((16, 16), (8, 8)), ((7, 9), (8, 8)), ((9, 13), (8, 8)),
                                             ((7, 10), (3, 4)), ((5, 3), (2, 2)), ((1, 1), (2, 3))])
def test_isa_matches_the_literal_interlaced_attention(hw, down_factor):
    """Padding to whole blocks (half before, the rest after; also when H, W are smaller than a block),
    the global relation over the interlaced groups, the local one within blocks, the crop back."""
    m = randomize(ISA(C, isa_channels=4, down_factor=down_factor)).double().eval()
    x = double_input(h=hw[0], w=hw[1])
    torch.testing.assert_close(m(x), isa_reference(m, x))


def test_isa_attends_within_the_groups_in_one_batched_call(monkeypatch):
    import seg.models.attention.isa as isa_module

    shapes = []
    real = isa_module.position_attention

    def spy(q, k, v, scale=1.0):
        shapes.append((tuple(q.shape), tuple(v.shape), scale))
        return real(q, k, v, scale)

    monkeypatch.setattr(isa_module, 'position_attention', spy)
    ISA(C, isa_channels=4, down_factor=(4, 4))(torch.randn(2, C, 7, 9))  # padded to 8 x 12: 2 x 3 blocks
    assert shapes == [((2 * 16, 4, 2, 3), (2 * 16, C, 2, 3), 0.5),  # 16 interlaced groups of 2 x 3
                      ((2 * 6, 4, 4, 4), (2 * 6, C, 4, 4), 0.5)]  # 6 blocks of 4 x 4


@pytest.mark.parametrize('name, hw', [('ema', (5, 6)), ('isa', (8, 8)), ('isa', (5, 6)), ('isa', (16, 24))])
def test_output_takes_an_in_place_add(name, hw):
    """timm's residual blocks add the shortcut onto the plug-in's output in place: no tensor autograd
    saved may be that output (ISA at one block: a plain regrouping would be a view of the last ReLU's output)."""
    m = build_attention(name, C).train()
    x = torch.randn(2, C, *hw, requires_grad=True)
    y = m(x)
    y += 1.0
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize('kw, match', [
    (dict(down_factor=(0, 8)), r'ISA: down_factor must be a pair \(Lh, Lw\) of integers >= 1, got \(0, 8\)'),
    (dict(down_factor=(8,)), 'down_factor must be a pair'),
    (dict(down_factor='88'), 'down_factor must be a pair'),
    (dict(down_factor=(8.0, 8)), 'down_factor must be a pair'),
    (dict(down_factor=8), 'down_factor must be a pair'),
    (dict(isa_channels=0), 'ISA: isa_channels must be an integer >= 1, got 0'),
    (dict(norm='LN'), "ISA: norm must be one of BN.*got 'LN'"),
])
def test_isa_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        build_attention('isa', C, **kw)
    with pytest.raises(ValueError, match="unknown norm 'LN'" if 'norm' in kw else match):  # the head's conv first
        ISAHead(8, C, 2, **kw)


def attention_matrix(rel, groups):
    """The (n x n) attention of each group: (G, C, h, w) -> (G, n, n)."""
    q = conv_bn_relu(conv_bn_relu(groups, rel.query[0]), rel.query[1]).flatten(2)
    k = conv_bn_relu(conv_bn_relu(groups, rel.key[0]), rel.key[1]).flatten(2)
    return torch.softmax(torch.einsum('gci,gcj->gij', q, k) / math.sqrt(q.shape[1]), dim=-1)


@pytest.mark.parametrize('hw, point', [((8, 12), (5, 7)), ((7, 10), (0, 0)), ((7, 10), (6, 9))])
def test_isa_maps_are_rows_of_the_two_attentions_and_their_product(hw, point):
    m = randomize(ISA(C, isa_channels=4, down_factor=(4, 4))).double().eval()
    x = double_input(b=1, h=hw[0], w=hw[1])
    maps = m.maps({'': [x]}, lambda h, w: point)
    assert set(maps) == {'global', 'local', 'effective'} and all(v.kind == 'point' for v in maps.values())
    # the full padded-map (Np x Np) matrices of the two steps, built group by group
    h, w = hw
    hp, wp = math.ceil(h / 4) * 4, math.ceil(w / 4) * 4
    top, left = (hp - h) // 2, (wp - w) // 2
    xp = x.new_zeros(1, C, hp, wp)
    xp[:, :, top:top + h, left:left + w] = x
    index = torch.arange(hp * wp).reshape(hp, wp)
    a_global = torch.zeros(hp * wp, hp * wp, dtype=x.dtype)
    y = torch.empty_like(xp)
    for u in range(4):
        for v in range(4):
            idx = index[u::4, v::4].reshape(-1)
            a_global[idx[:, None], idx[None, :]] = attention_matrix(m.global_relation, xp[:, :, u::4, v::4])[0]
            y[:, :, u::4, v::4] = relation_reference(m.global_relation, xp[:, :, u::4, v::4])
    a_local = torch.zeros_like(a_global)
    for i in range(0, hp, 4):
        for j in range(0, wp, 4):
            idx = index[i:i + 4, j:j + 4].reshape(-1)
            a_local[idx[:, None], idx[None, :]] = attention_matrix(m.local_relation, y[:, :, i:i + 4, j:j + 4])[0]
    p = index[point[0] + top, point[1] + left]

    def cropped(row):
        return row.reshape(hp, wp)[top:top + h, left:left + w]

    torch.testing.assert_close(maps['global'].values, cropped(a_global[p]))
    torch.testing.assert_close(maps['local'].values, cropped(a_local[p]))
    torch.testing.assert_close(maps['effective'].values, cropped((a_local @ a_global)[p]))
    if (hp, wp) == (h, w):  # no padding: each row is a whole distribution
        for key in maps:
            torch.testing.assert_close(maps[key].values.sum(), torch.tensor(1.0, dtype=x.dtype))
    assert m.maps({'': [x]}) == {}


# ---------------------------------------------------------------------------------------------
# The heads

@pytest.mark.parametrize('cfg', [dict(type='EMAHead', ema_channels=C, num_bases=4),
                                 dict(type='EMAHead', ema_channels=C, concat_input=False),
                                 dict(type='ISAHead', isa_channels=4, down_factor=(4, 4))])
def test_heads_shapes_and_gradients(cfg):
    head = MODELS.build(dict(cfg, in_channels=24, channels=8, num_classes=3))
    x = torch.randn(2, 24, 7, 9, requires_grad=True)
    out = head([torch.randn(2, 4, 3, 3), x])
    assert set(out) == set(head.outputs) == {'out'} and out['out'].shape == (2, 3, 7, 9)
    out['out'].square().mean().backward()
    assert x.grad.abs().sum() > 0
    for name, p in head.named_parameters():
        assert p.grad is not None, name
    head.eval()
    with torch.no_grad():
        assert head([torch.randn(1, 24, 5, 3)])['out'].shape == (1, 3, 5, 3)


def test_ema_head_layout_and_bases_update():
    head = EMAHead(24, 8, 3, ema_channels=C, num_bases=4, concat_input=False)
    assert head.bottleneck is None and head.conv_out[0].in_channels == C
    with_cat = EMAHead(24, 8, 3, ema_channels=C, num_bases=4)
    assert with_cat.bottleneck[0].in_channels == 24 + 8
    feats = [torch.randn(2, 24, 6, 7)]
    before = with_cat.context.bases.clone()
    with_cat.eval()(feats)
    assert torch.equal(with_cat.context.bases, before)
    with_cat.train()(feats)
    assert not torch.equal(with_cat.context.bases, before)


def test_isa_head_concatenates_the_attention_and_the_conv():
    head = randomize(ISAHead(24, C, 3, isa_channels=4, down_factor=(4, 4))).eval()
    feats = [torch.randn(1, 24, 6, 7)]
    with torch.no_grad():
        x = head.conv_in(feats[0])
        expected = head.cls(head.bottleneck(torch.cat([head.context(x), x], dim=1)))
        torch.testing.assert_close(head(feats)['out'], expected)
    assert head.bottleneck[0].kernel_size == (1, 1)
