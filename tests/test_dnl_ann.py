"""The disentangled non-local block and head (DNLNet) and the asymmetric non-local blocks and head (ANN):
each against an explicit re-computation of its formula (N x N for DNL, N x S for the pyramid keys),
outputs and gradients; the maps; the heads' training and eval behaviour; bad options; AFNB in the
visualiser (mmsegmentation 1.2.2's logits: tests/test_convert.py)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seg.models.attention import AFNB, APNB, AttentionModule, DisentangledNonLocal, build_attention
from seg.models.attention.ann import pool_bins, pyramid_pool, pyramid_pool_matrix
from seg.models.heads import ANNHead, AttentionHead, DNLHead
from seg.registry import ATTENTION, MODELS

from .conftest import randomize

C = 16


def _x(b=2, c=C, h=5, w=7, seed=1):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def conv1x1(x, conv):
    """A 1x1 convolution as a per-pixel matrix product (bias where it has one)."""
    y = torch.einsum('oc,bchw->bohw', conv.weight[:, :, 0, 0], x)
    return y if conv.bias is None else y + conv.bias[:, None, None]


def bn(x, norm):
    """Eval-mode batch norm."""
    shape = (1, -1, 1, 1)
    return ((x - norm.running_mean.view(shape)) / torch.sqrt(norm.running_var.view(shape) + norm.eps)
            * norm.weight.view(shape) + norm.bias.view(shape))


def conv_bn_relu(x, block, relu=True):
    y = bn(conv1x1(x, block[0]), block[1])
    return torch.relu(y) if relu else y


def grads(out, inputs):
    return torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(),
                               inputs)


# ---------------------------------------------------------------------------------------------- DNL
def dnl_reference(m: DisentangledNonLocal, x):
    """mmsegmentation's DisentangledNonLocal2d written out: the N x N pairwise matrix of the whitened
    embeddings (divided by sqrt(Ci) and the temperature), the unary softmax, the output conv and norm."""
    b, c, h, w = x.shape
    n = h * w
    g = conv1x1(x, m.g).flatten(2)  # [B, Ci, N]
    if m.mode == 'gaussian':
        theta = phi = x.flatten(2)
    else:
        theta, phi = conv1x1(x, m.theta).flatten(2), conv1x1(x, m.phi).flatten(2)  # [B, Ci, N]
    theta = theta - theta.mean(dim=2, keepdim=True)
    phi = phi - phi.mean(dim=2, keepdim=True)
    logits = torch.einsum('bcp,bcn->bpn', theta, phi)  # [B, N, N]
    if m.mode == 'embedded_gaussian':
        if m.use_scale:
            logits = logits / theta.shape[1] ** 0.5
        pairwise = torch.softmax(logits / m.temperature, dim=-1)
    elif m.mode == 'gaussian':
        pairwise = torch.softmax(logits, dim=-1)
    elif m.mode == 'dot_product':
        pairwise = logits / n
    else:
        wt, wp = m.concat_project.weight.view(2, -1)
        pairwise = torch.relu((wt @ theta)[:, :, None] + (wp @ phi)[:, None, :]) / n
    y = torch.einsum('bpn,bcn->bcp', pairwise, g)  # [B, Ci, N]
    unary = torch.softmax(conv1x1(x, m.conv_mask).flatten(1), dim=1)  # [B, N]
    y = y + torch.einsum('bn,bcn->bc', unary, g)[:, :, None]
    z = torch.einsum('oc,bcn->bon', m.conv_out.weight[:, :, 0, 0], y).reshape(b, c, h, w)
    return x + bn(z, m.norm), pairwise, unary


@pytest.mark.parametrize('kw', [dict(), dict(use_scale=False), dict(temperature=0.5), dict(mode='gaussian'),
                                dict(mode='dot_product'), dict(mode='concatenation', query_chunk=8)])
def test_dnl_equals_the_explicit_formula_outputs_and_gradients(kw):
    m = randomize(DisentangledNonLocal(C, reduction=4, **kw)).double().eval()
    x = _x().requires_grad_()
    params = list(m.parameters())
    y = m(x)
    ref, _, _ = dnl_reference(m, x)
    torch.testing.assert_close(y, ref)
    for got, want in zip(grads(y, [x, *params]), grads(ref, [x, *params])):
        torch.testing.assert_close(got, want)


def test_dnl_whitening_and_temperature_are_what_the_op_sees():
    """The pairwise term is position attention of the mean-subtracted embeddings at scale 1 / (sqrt(Ci) T):
    a constant shift of the keys changes nothing (the softmax alone removes it), nor does a constant shift
    of the queries (which only the whitening removes)."""
    m = randomize(DisentangledNonLocal(C, reduction=2)).double().eval()
    assert m.scale == pytest.approx(1 / (math.sqrt(C // 2) * 0.05))
    assert DisentangledNonLocal(C, use_scale=False, temperature=0.25).scale == pytest.approx(4.0)
    x = _x()
    with torch.no_grad():
        y = m(x)
        m.phi.bias.add_(3.0)  # a constant key shift: removed by the whitening (and by the softmax)
        m.theta.bias.add_(-2.0)  # a constant query shift: removed by the whitening only
        torch.testing.assert_close(m(x), y)
    with pytest.raises(ValueError, match='temperature must be a number > 0'):
        DisentangledNonLocal(C, temperature=0)


def test_dnl_starts_as_identity_and_trains():
    m = DisentangledNonLocal(C).train()
    x = torch.randn(2, C, 6, 5, requires_grad=True)
    y = m(x)
    torch.testing.assert_close(y, x)  # the output norm's scale starts at 0
    y.square().sum().backward()
    assert m.norm.weight.grad.abs().sum() > 0
    gm = DisentangledNonLocal(C, mode='gaussian').train()  # trains (mmseg's gaussian DNL whitens x in place)
    gm(x).square().sum().backward()


def test_dnl_maps_are_the_reference_rows():
    m = randomize(DisentangledNonLocal(C, reduction=4)).double().eval()
    x = _x(b=1)
    _, pairwise, unary = dnl_reference(m, x)
    maps = m.maps({'': [x.float()]}, lambda h, w: (3, 4))
    assert set(maps) == {'pairwise', 'unary'}
    assert maps['pairwise'].kind == 'point' and maps['unary'].kind == 'spatial'
    torch.testing.assert_close(maps['pairwise'].values.double(), pairwise[0, 3 * 7 + 4].reshape(5, 7),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(maps['unary'].values.double(), unary[0].reshape(5, 7), rtol=1e-4, atol=1e-6)
    assert set(m.maps({'': [x.float()]})) == {'unary'}  # without a point: the unary map only
    assert m.maps({}) == {}


@pytest.mark.parametrize('kw, match', [
    (dict(reduction=17), 'DisentangledNonLocal: reduction must be <= channels'),
    (dict(mode='cosine'), 'mode must be one of embedded_gaussian'),
    (dict(use_scale=1), 'use_scale must be a bool'),
    (dict(temperature=-0.1), 'temperature must be a number > 0, got -0.1'),
    (dict(temperature='cold'), "temperature must be a number > 0, got 'cold'"),
    (dict(norm='LN'), "norm must be one of BN.*got 'LN'"),
    (dict(query_chunk=0), 'query_chunk must be an integer >= 1'),
])
def test_dnl_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        build_attention('dnl', C, **kw)


def test_dnl_head_is_the_attention_head_preset():
    head = MODELS.build(dict(type='DNLHead', in_channels=24, channels=C, num_classes=3, temperature=0.1,
                             norm='SyncBN'))
    assert type(head) is AttentionHead and type(head.context) is DisentangledNonLocal
    assert head.context.temperature == 0.1 and isinstance(head.context.norm, nn.SyncBatchNorm)
    assert ATTENTION.get('dnl') is DisentangledNonLocal and DNLHead is MODELS.get('DNLHead')
    assert {k for k in head.state_dict() if k.startswith('context.conv_mask')} == {
        'context.conv_mask.weight', 'context.conv_mask.bias'}


# ---------------------------------------------------------------------------------------------- ANN
def test_pool_bins_are_adaptive_average_pooling():
    for h, w in ((1, 1), (1, 9), (7, 1), (9, 13), (6, 8), (5, 3), (17, 33)):
        x = _x(h=h, w=w)
        ref = torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in (1, 3, 6, 8)], dim=2)
        torch.testing.assert_close(pyramid_pool(x, (1, 3, 6, 8)), ref)
        torch.testing.assert_close(x.flatten(2) @ pyramid_pool_matrix(h, w, (1, 3, 6, 8), x).T, ref)
    assert pool_bins(5, 3, x).tolist() == [[0.5, 0.5, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 0.5, 0.5]]


def stage_reference(stage, query_feats, key_feats):
    """One ANN attention stage written out: projections, adaptive average pooling of keys and values,
    softmax over the S cells scaled by 1 / sqrt(P), the out projection; max-pooled queries and a bilinear
    upsampling for a query scale > 1."""
    q = conv_bn_relu(query_feats, stage.query_project)
    k = conv_bn_relu(key_feats, stage.key_project)
    v = conv1x1(key_feats, stage.value_project)
    if stage.query_scale > 1:
        q = F.max_pool2d(q, stage.query_scale)
    k = torch.cat([F.adaptive_avg_pool2d(k, s).flatten(2) for s in stage.key_pool_scales], dim=2)
    v = torch.cat([F.adaptive_avg_pool2d(v, s).flatten(2) for s in stage.key_pool_scales], dim=2)
    attn = torch.softmax(torch.einsum('bcn,bcs->bns', q.flatten(2), k) / math.sqrt(stage.channels), dim=-1)
    context = torch.einsum('bns,bcs->bcn', attn, v).reshape(q.shape[0], -1, *q.shape[2:])
    context = conv1x1(context, stage.out_project)
    if stage.query_scale > 1:
        context = F.interpolate(context, size=query_feats.shape[2:], mode='bilinear', align_corners=False)
    return context


@pytest.mark.parametrize('kw', [dict(), dict(project_channels=4, key_pool_scales=(2, 5)),
                                dict(query_scales=(1, 2))])
def test_apnb_equals_the_explicit_formula_outputs_and_gradients(kw):
    m = randomize(APNB(C, **kw)).double().eval()
    x = _x(h=9, w=13).requires_grad_()
    y = m(x)
    context = sum(stage_reference(stage, x, x) for stage in m.stages)
    ref = torch.relu(conv_bn_relu(torch.cat([context, x], dim=1), m.bottleneck, relu=False))
    torch.testing.assert_close(y, ref)
    params = list(m.parameters())
    for got, want in zip(grads(y, [x, *params]), grads(ref, [x, *params])):
        torch.testing.assert_close(got, want)
    assert sum(p.numel() for p in params) == APNB.param_count(C, **kw)


def test_afnb_equals_the_explicit_formula_and_takes_a_low_feature_of_another_size():
    m = randomize(AFNB(8, C, 6, key_pool_scales=(1, 2, 4))).double().eval()
    low, high = _x(c=8, h=11, w=6, seed=2).requires_grad_(), _x(h=5, w=7).requires_grad_()
    y = m(low, high)
    stage = m.stages[0]
    ref = conv_bn_relu(torch.cat([stage_reference(stage, high, low), high], dim=1), m.bottleneck, relu=False)
    torch.testing.assert_close(y, ref)
    params = list(m.parameters())
    for got, want in zip(grads(y, [low, high, *params]), grads(ref, [low, high, *params])):
        torch.testing.assert_close(got, want)
    assert isinstance(m, AttentionModule) and m not in ATTENTION.module_dict.values()
    assert 'afnb' not in ATTENTION.module_dict
    with pytest.raises(ValueError, match=r'AFNB expects a non-empty \(B, 8, H, W\)'):
        m(high, high)


def test_apnb_shares_its_key_and_query_projection_as_mmsegmentation():
    """One module under both names: the state dict lists it twice, and loading a state whose two copies
    differ keeps the later one (``query_project``), as mmsegmentation's load does."""
    m = APNB(C)
    stage = m.stages[0]
    assert stage.query_project is stage.key_project
    state = m.state_dict()
    assert {'stages.0.key_project.0.weight', 'stages.0.query_project.0.weight'} <= set(state)
    state['stages.0.key_project.0.weight'] = torch.zeros_like(state['stages.0.key_project.0.weight'])
    state['stages.0.query_project.0.weight'] = torch.ones_like(state['stages.0.query_project.0.weight'])
    m.load_state_dict(state)
    assert torch.equal(stage.key_project[0].weight, torch.ones_like(stage.key_project[0].weight))
    calls = []
    stage.key_project.register_forward_hook(lambda mod, i, o: calls.append(o))
    m(torch.randn(1, C, 4, 4))
    assert len(calls) == 1  # computed once for keys and queries


def test_pyramid_maps_are_the_weights_of_the_context():
    """A point's 'all' map (its weights over the key pixels, the levels' maps summed) applied to the
    per-pixel values gives its context exactly; each level's map sums to that level's weight."""
    m = randomize(AFNB(8, C, 6)).double().eval()
    low, high = _x(c=8, h=9, w=13, seed=2), _x(h=9, w=13)
    records: dict[str, list[torch.Tensor]] = {}
    for tap in m.attention_maps:
        m.get_submodule(tap).register_forward_hook(
            lambda mod, i, o, tap=tap: records.setdefault(tap, []).append(o))
    m(low, high)
    stage = m.stages[0]
    maps = m.maps(records, lambda h, w: (4, 10))
    assert set(maps) == {'level1', 'level3', 'level6', 'level8', 'all'}
    assert all(a.kind == 'point' and a.values.shape == (9, 13) for a in maps.values())
    total = maps['all'].values.double()
    torch.testing.assert_close(sum(maps[f'level{s}'].values.double() for s in (1, 3, 6, 8)), total)
    torch.testing.assert_close(total.sum(), torch.tensor(1.0, dtype=torch.float64))
    with torch.no_grad():
        v = conv1x1(low, stage.value_project)[0]  # [P, H, W]: the values before pooling
        context = conv1x1(torch.einsum('hw,chw->c', total, v)[None, :, None, None], stage.out_project)
        ref = stage(high, low)[0, :, 4, 10]
    torch.testing.assert_close(context.flatten(), ref, rtol=1e-5, atol=1e-6)  # the maps are float32
    assert m.maps(records) == {}
    two = randomize(APNB(C, query_scales=(1, 2))).eval()
    seen = {}
    for tap in two.attention_maps:
        two.get_submodule(tap).register_forward_hook(
            lambda mod, i, o, tap=tap: seen.setdefault(tap, []).append(o))
    two(torch.randn(1, C, 8, 10))
    assert set(two.maps(seen, lambda h, w: (h - 1, w - 1))) == {
        f'stage{i}-{k}' for i in (0, 1) for k in ('level1', 'level3', 'level6', 'level8', 'all')}


@pytest.mark.parametrize('cls, kw, match', [
    (APNB, dict(project_channels=0), 'APNB: project_channels must be an integer >= 1, got 0'),
    (APNB, dict(query_scales=()), 'APNB: query_scales must be a non-empty sequence'),
    (APNB, dict(query_scales=3), 'APNB: query_scales must be a non-empty sequence'),
    (APNB, dict(key_pool_scales=(1, 0)), r'APNB: key_pool_scales\[1\] must be an integer >= 1, got 0'),
    (APNB, dict(norm='LN'), "APNB: norm must be one of BN.*got 'LN'"),
])
def test_ann_blocks_bad_options(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(C, **kw)
    with pytest.raises(ValueError, match='AFNB: low_channels must be an integer >= 1'):
        AFNB(0, C, 4)
    with pytest.raises(ValueError, match=r'query_scale=4 max-pools the queries.*got \(3, 9\)'):
        APNB(C, query_scales=(4,))(torch.randn(1, C, 3, 9))


def test_ann_head_layout_training_and_eval():
    head = MODELS.build(dict(type='ANNHead', in_channels=(12, 24), channels=C, num_classes=3, project_channels=4,
                             in_index=(1, 2)))
    assert type(head.fusion) is AFNB and type(head.context) is APNB and head.outputs == ('out',)
    assert head.fusion.stages[0].query_project[0].in_channels == 24  # queries: the high-level feature
    assert head.fusion.stages[0].key_project[0].in_channels == 12  # keys / values: the low-level one
    randomize(head)
    feats = [torch.randn(2, 4, 9, 9), torch.randn(2, 12, 7, 9), torch.randn(2, 24, 7, 9)]
    head.train()
    out = head(feats)['out']
    assert out.shape == (2, 3, 7, 9) and set(head(feats)) == {'out'}
    assert not torch.equal(out, head(feats)['out'])  # the two dropouts sample anew
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    head.eval()
    with torch.no_grad():
        first, second = head(feats)['out'], head(feats)['out']
    assert torch.equal(first, second)
    # one feature as both inputs (an int in_channels / in_index)
    one = ANNHead(24, C, 3)
    assert one.in_index == (2, 3) and ANNHead(24, C, 3, in_index=-1).in_index == (-1, -1)
    assert one.fusion.project_channels == one.context.project_channels == C // 2
    with pytest.raises(ValueError, match=r"ANNHead: in_channels must be an integer or a \(low, high\) pair"):
        ANNHead((12, 24, 48), C, 3)
    with pytest.raises(ValueError, match='ANNHead: in_index must be an integer or a'):
        ANNHead((12, 24), C, 3, in_index='23')


def test_afnb_is_recorded_and_drawn_by_the_visualiser(tmp_path):
    """The recorder hooks every AttentionModule, AFNB (not in the zoo, two inputs) included."""
    from seg.visualization.attention import AttentionRecorder, Geometry, draw_attention

    model = nn.Module()
    model.decode_head = randomize(ANNHead((8, C), C, 3, project_channels=4)).eval()
    recorder = AttentionRecorder(model)
    assert {n: type(m) for n, m in recorder.modules.items()} == {'decode_head.fusion': AFNB,
                                                                  'decode_head.context': APNB}
    feats = [None, None, torch.randn(1, 8, 4, 6), torch.randn(1, C, 4, 6)]
    with recorder, torch.no_grad():
        model.decode_head(feats)
    image = np.full((32, 48, 3), 128, np.uint8)
    paths, manifest = draw_attention(recorder, image, Geometry((32, 48), (32, 48), (32, 48)), [(20, 12)],
                                     str(tmp_path), 'img')
    names = {os.path.basename(p) for p in paths}
    for module, tag in (('afnb', 'decode_head-fusion'), ('apnb', 'decode_head-context')):
        assert {f'img_{module}_{tag}_{k}_x20_y12.png' for k in ('level1', 'level3', 'level6', 'level8', 'all')} \
            <= names
    assert all(os.path.isfile(p) for p in paths) and len(manifest) == len(paths)
